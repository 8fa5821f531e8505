"""A loaded bundle ready to answer rows: input checks, the bundle's predictor, and a
verified fast path for all-numeric models that accept a plain matrix.

Runs in inference threads (never on the event loop). Thread-safe as far as the model's
``predict`` is (scikit-learn, XGBoost and LightGBM are)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas_core.errors import AtlasError, InvalidArgument

_NUMBER_TYPES = (int, float, bool, np.integer, np.floating)


@dataclass
class RowResult:
    label: str = ""
    value: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)
    fallback_used: bool = False
    error: AtlasError | None = None


def check_row_names(row: Mapping[str, Any], names: Sequence[str], name_set: frozenset[str]
                    ) -> None:
    """Missing and extra features, named (cheap: runs on the event loop)."""
    if len(row) == len(names) and name_set.issuperset(row):
        return
    missing = [n for n in names if n not in row]
    extra = sorted(k for k in row if k not in name_set)
    parts = []
    if missing:
        parts.append("missing features: " + ", ".join(missing))
    if extra:
        parts.append("unknown features: " + ", ".join(extra))
    raise InvalidArgument("; ".join(parts), reason="INVALID_FEATURES",
                          metadata={"missing": ",".join(missing), "extra": ",".join(extra)})


class ServableModel:
    """One model version in memory."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.predictor = bundle.predictor
        self.schema = bundle.input_schema
        self.names: list[str] = list(self.schema.names)
        self.name_set = frozenset(self.names)
        self.task: str = bundle.task
        self.classes = [str(c) for c in (bundle.classes or [])]
        self.memory_bytes = int(getattr(bundle, "memory_bytes", 0) or bundle.size_bytes)
        self.load_seconds = float(bundle.load_seconds)
        self.defaults = _defaults(bundle.training_stats)
        self.numeric = all(c.kind == "numeric" for c in self.schema.columns)
        self.fast = self.numeric and self._fast_path_agrees()

    # -- the fast path: a float matrix straight into the model ------------------------------

    def _matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        try:
            return np.array([[_number(r[n]) for n in self.names] for r in rows],
                            dtype=np.float64)
        except (TypeError, ValueError):
            bad = sorted({n for r in rows for n in self.names if not _is_number(r[n])})
            raise InvalidArgument(
                "mistyped features: " + "; ".join(f"{n} (a number is expected)" for n in bad),
                reason="MISTYPED_FEATURES", metadata={"mistyped": ",".join(bad)}) from None

    def _raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        model = self.predictor.model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.task == "regression":
                return np.asarray(model.predict(matrix), dtype=np.float64)
            return np.asarray(model.predict_proba(matrix), dtype=np.float64)

    def _fast_path_agrees(self) -> bool:
        """Use the matrix path only when it gives exactly the predictor's answers."""
        probe = [dict(self.defaults) for _ in range(2)]
        for i, name in enumerate(self.names):
            probe[1][name] = self.defaults.get(name, 0.0) + (i % 3)
        try:
            import pandas as pd

            expected = self._scores_slow(pd.DataFrame(probe))
            return bool(np.allclose(self._raw_scores(self._matrix(probe)), expected))
        except Exception:  # noqa: BLE001 - any failure means: keep the checked slow path
            return False

    # -- answers -----------------------------------------------------------------------------

    def _scores_slow(self, frame: Any) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.predictor.predict(frame), dtype=np.float64)
        return np.asarray(self.predictor.predict_proba(frame), dtype=np.float64)

    def predict(self, rows: Sequence[Mapping[str, Any]], *, explain: bool = False,
                all_scores: bool = False) -> list[RowResult]:
        """One result per row; a row whose values are mistyped gets its own error."""
        try:
            return self._predict_many(rows, explain, all_scores)
        except InvalidArgument:
            if len(rows) == 1:
                raise
        out = []
        for row in rows:  # isolate the bad rows; the others still get answers
            try:
                out.extend(self._predict_many([row], explain, all_scores))
            except InvalidArgument as exc:
                out.append(RowResult(error=exc))
        return out

    def _predict_many(self, rows: Sequence[Mapping[str, Any]], explain: bool,
                      all_scores: bool) -> list[RowResult]:
        import pandas as pd

        frame = None
        if self.fast:
            scores = self._raw_scores(self._matrix(rows))
        else:
            frame = pd.DataFrame(list(rows), columns=self.names)
            scores = self._scores_slow(frame)
        results = [self._result(s, all_scores) for s in scores]
        if explain:
            frame = frame if frame is not None else pd.DataFrame(list(rows), columns=self.names)
            found = self.predictor.contributions(frame)
            if found is not None:
                values, names = found
                for result, line in zip(results, np.asarray(values), strict=False):
                    result.contributions = {n: float(v) for n, v in zip(names, line,
                                                                          strict=False)}
        return results

    def _result(self, score: Any, all_scores: bool) -> RowResult:
        if self.task == "regression":
            return RowResult(value=float(score))
        best = int(np.argmax(score))
        label = self.classes[best] if best < len(self.classes) else str(best)
        result = RowResult(label=label, value=float(score[best]))
        result.scores = ({c: float(p) for c, p in zip(self.classes, score, strict=False)}
                         if all_scores else {label: result.value})
        return result


def _is_number(value: Any) -> bool:
    return value is None or isinstance(value, _NUMBER_TYPES)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, _NUMBER_TYPES):
        return float(value)
    raise TypeError(value)


def _defaults(training_stats: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Training-data defaults for the DEFAULTS fallback: the bin holding the median for
    numbers (its edge), the most frequent value for categories."""
    out: dict[str, Any] = {}
    for name, stats in (training_stats or {}).items():
        if "frequencies" in stats:
            freqs = {k: v for k, v in stats["frequencies"].items() if k != "__other__"}
            out[name] = max(freqs, key=freqs.get) if freqs else None
        else:
            sample = stats.get("sample") or []
            out[name] = float(sample[len(sample) // 2]) if sample else stats.get("mean")
    return out

"""A loaded bundle ready to answer rows: input checks, the bundle's predictor, and a
verified fast path for models of numeric and categorical inputs that accept a plain matrix
(float64, or object with the categorical columns' raw values: ATLAS's preprocessing encodes
them by dict lookups built from its fitted encoders): every family compiled
by ``atlas_core.ml.compile_estimator`` (XGBoost as flat arrays, Treelite for scikit-learn
forests and LightGBM, NumPy for linear models and the MLP), fold bags and ensembles as the
weighted mean of their members' compiled scorers.

Runs in inference threads (never on the event loop). Thread-safe as far as the model's
``predict`` is (scikit-learn, XGBoost and LightGBM are)."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from atlas_core.errors import AtlasError, InvalidArgument
from atlas_core.ml import MatrixScorer, compile_estimator
from atlas_serving.dataplane.variants import ServedVersion

log = logging.getLogger("atlas.serving.inference")

_NUMBER_TYPES = (int, float, bool, np.integer, np.floating)
_PLAIN_NUMBER_TYPES = frozenset({float, int, bool, type(None)})
UNSEEN_CATEGORY = "__atlas_unseen__"  # verification rows hold a category training never saw
VERIFY_ROWS = 256  # from atlas_core.ml's OWN_PREDICT_ROWS up: a forest's batch path
SMALL_BATCH = 16  # below them: its GTIL path (both are checked)


@dataclass
class RowResult:
    label: str = ""
    value: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)
    fallback_used: bool = False
    error: AtlasError | None = None
    # Said to the caller (unseen categories, how contributions were found).
    warnings: list[str] = field(default_factory=list)
    # Features whose category training never saw (counted in a metric).
    unseen: list[str] = field(default_factory=list)
    # Every class's probability in the model's class order (classification): kept for the
    # prediction index (ground truth, model quality); never sent unless asked for.
    probs: list[float] | None = None


def check_row_names(
    row: dict[str, Any],
    names: Sequence[str],
    name_set: frozenset[str],
    unused: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``row``, or a copy completed with None for the features the model drops and the
    caller left out; missing and extra features are named (cheap: runs on the event loop)."""
    if len(row) == len(names) and name_set.issuperset(row):
        return row
    missing = [n for n in names if n not in row]
    extra = sorted(k for k in row if k not in name_set)
    if not extra and unused.issuperset(missing):
        return {**row, **dict.fromkeys(missing)}
    missing = [n for n in missing if n not in unused]
    parts = []
    if missing:
        parts.append("missing features: " + ", ".join(missing))
    if extra:
        parts.append("unknown features: " + ", ".join(extra))
    raise InvalidArgument(
        "; ".join(parts),
        reason="INVALID_FEATURES",
        metadata={"missing": ",".join(missing), "extra": ",".join(extra)},
    )


class ServableModel:
    """One model version in memory."""

    # which version of the model this is ("refit_full", "fold_bag"; "" when the bundle names
    # none) and why: set by the model cache, see dataplane.variants
    variant: str = ""
    variant_reason: str = ""
    # how rows are scored: "compiled" (every estimator compiled), "matrix" (a matrix, some
    # estimators as themselves) or "frame" (the bundle's predictor on a DataFrame)
    scoring: str = "frame"

    def __init__(self, bundle: Any, *, compile_all: bool = True) -> None:
        self.bundle = bundle
        self.compile_all = compile_all
        self.predictor = bundle.predictor
        self.schema = bundle.input_schema
        self.names: list[str] = list(self.schema.names)
        self.name_set = frozenset(self.names)
        self.unused = self.schema.unused
        self.task: str = bundle.task
        self.classes = [str(c) for c in (bundle.classes or [])]
        self.memory_bytes = int(getattr(bundle, "memory_bytes", 0) or bundle.size_bytes)
        self.load_seconds = float(bundle.load_seconds)
        self.defaults = _defaults(bundle.training_stats)
        # dates, free text and dropped ids (column roles) are not categories: new values are
        # expected there
        open_columns: frozenset[str] = getattr(
            self.predictor.model, "open_vocabulary_columns", frozenset()
        )
        self.vocabulary = {
            name: known
            for name, known in _vocabulary(bundle.training_stats).items()
            if name not in open_columns
        }
        self.numeric = all(c.kind == "numeric" for c in self.schema.columns)
        # positions of the categorical inputs: their raw values go into an object matrix
        self._categorical = [
            i for i, c in enumerate(self.schema.columns) if c.kind == "categorical"
        ]
        self._numbers = [i for i, c in enumerate(self.schema.columns) if c.kind == "numeric"]
        matrix_ready = all(c.kind in ("numeric", "categorical") for c in self.schema.columns)
        self._values = (
            itemgetter(*self.names)
            if len(self.names) > 1
            else (lambda r, n=self.names[0]: (r[n],))
            if self.names
            else (lambda r: ())
        )
        # A verified float-matrix scorer (no DataFrame), its plain twin (inputs with inf go
        # there: the model decides), and, when every estimator in it is compiled, the CPU
        # cost of one row (small enough: answered on the event loop, see batching).
        self._scorer: MatrixScorer | None = None
        self._plain: MatrixScorer | None = None
        self.single_row_seconds: float | None = None
        self.fast = False
        if matrix_ready:
            self._choose_scorers()

    # -- the fast path: a float matrix straight into the model ------------------------------

    def _matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if self._categorical:
            return self._object_matrix(rows)
        values = self._values
        try:
            lines = [values(r) for r in rows]
            for line in lines:  # None -> NaN; strings must not be parsed as numbers
                if not _PLAIN_NUMBER_TYPES.issuperset(map(type, line)):
                    lines = [[_number(v) for v in line] for line in lines]
                    break
            return np.array(lines, dtype=np.float64).reshape(len(rows), len(self.names))
        except (TypeError, ValueError):
            bad = sorted({n for r in rows for n in self.names if not _is_number(r[n])})
            raise InvalidArgument(
                "mistyped features: " + "; ".join(f"{n} (a number is expected)" for n in bad),
                reason="MISTYPED_FEATURES",
                metadata={"mistyped": ",".join(bad)},
            ) from None

    def _object_matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Numeric columns as floats (None -> NaN), categorical ones as given (the model's
        own preprocessing turns them into strings, as it does for a frame)."""
        values = self._values
        matrix = np.empty((len(rows), len(self.names)), dtype=object)
        if rows:
            matrix[:] = [values(r) for r in rows]
        for j in self._numbers:
            column = matrix[:, j].tolist()
            try:
                if _PLAIN_NUMBER_TYPES.issuperset(map(type, column)):  # None -> NaN
                    matrix[:, j] = np.array(column, dtype=np.float64)
                else:
                    matrix[:, j] = [_number(v) for v in column]
            except (TypeError, ValueError):
                name = self.names[j]
                raise InvalidArgument(
                    f"mistyped features: {name} (a number is expected)",
                    reason="MISTYPED_FEATURES",
                    metadata={"mistyped": name},
                ) from None
        return matrix

    def _raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        assert self._scorer is not None and self._plain is not None
        if self._scorer is not self._plain and _has_inf(matrix, self._numbers):
            return self._plain(matrix)
        return self._scorer(matrix)

    def _matrix_scorer(self, compile_trees: bool) -> tuple[MatrixScorer | None, bool]:
        """A scorer of the model for a float matrix in schema order, and whether every
        estimator inside it was compiled. ATLAS's own models bring their preprocessing."""
        model = self.predictor.model
        missed: list[Any] = []

        def compiled(estimator: Any, width: int) -> MatrixScorer | None:
            if not compile_trees:
                return None
            xgboost = type(estimator).__module__.startswith("xgboost")
            scorer = compile_estimator(estimator, width) if self.compile_all or xgboost else None
            if scorer is None:
                missed.append(estimator)
            return scorer

        if hasattr(model, "matrix_scorer"):
            scorer = model.matrix_scorer(self.names, compiled)
        elif self._categorical:  # a bare estimator does not encode categories itself
            return None, False
        else:
            scorer = compiled(model, len(self.names)) or (
                lambda M: _estimator_scores(model, self.task, M)
            )
        if missed:
            log.info(
                "not compiled; scored by the estimator itself",
                extra={"estimators": sorted({type(e).__name__ for e in missed})},
            )
        return scorer, compile_trees and not missed

    def _choose_scorers(self) -> None:
        """Keep a matrix scorer only if it reproduces the predictor's own answers on
        training-like rows (with missing values) and probes; compiled trees preferred."""
        try:
            import pandas as pd

            matrix = self._verification_matrix()
            # the frame the slow path builds from such rows (column dtypes inferred)
            expected = self._scores_slow(pd.DataFrame(matrix.tolist(), columns=self.names))
        except Exception:  # noqa: BLE001 - any failure means: keep the checked slow path
            log.warning("cannot verify a fast path for this model", exc_info=True)
            return
        for compile_trees in (False, True):
            try:
                scorer, all_compiled = self._matrix_scorer(compile_trees)
                # the whole matrix and a small batch: compiled scorers may switch by size
                got = None if scorer is None else scorer(matrix)
                small = None if scorer is None else scorer(matrix[:SMALL_BATCH])
            except Exception:  # noqa: BLE001 - any failure means: not this scorer
                log.warning("matrix scoring failed; not used", exc_info=True)
                continue
            if scorer is None:
                log.info(
                    "no matrix path for this model: scored through a frame",
                    extra={"compiled": compile_trees},
                )
                break
            if (
                got is None
                or small is None
                or got.shape != expected.shape
                or not np.allclose(got, expected, rtol=1e-5, atol=1e-6)
                or not np.allclose(small, expected[:SMALL_BATCH], rtol=1e-5, atol=1e-6)
            ):
                if got is not None:
                    log.warning(
                        "matrix scoring disagrees with the model; not used",
                        extra={"compiled": compile_trees},
                    )
                continue
            if not compile_trees:
                self._scorer = self._plain = scorer
                self.fast = True
                self.scoring = "matrix"
            elif self._plain is not None:
                self._scorer = scorer
                if all_compiled:
                    self.scoring = "compiled"
                    self.single_row_seconds = self._time_single_row()

    def _time_single_row(self) -> float:
        """The best of a few one-row predictions (thread CPU time: robust to a busy host)."""
        row = [dict(zip(self.names, self._verification_matrix()[0].tolist(), strict=True))]
        best = math.inf
        for _ in range(20):
            start = time.thread_time()
            self.predict(row)
            best = min(best, time.thread_time() - start)
        return best

    def _verification_matrix(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        stats = self.bundle.training_stats or {}
        columns = []
        for name in self.names:
            known = self._known_categories(name)
            if known is not None:  # training's categories, one it never saw, missing values
                pool = np.array([*known, UNSEEN_CATEGORY, None], dtype=object)
                columns.append(rng.choice(pool, VERIFY_ROWS))
                continue
            sample = [
                v
                for v in (stats.get(name) or {}).get("sample") or []
                if isinstance(v, (int, float)) and math.isfinite(v)
            ]
            base = float(self.defaults.get(name) or 0.0)
            pool = np.asarray(sample or [base - 1.0, base, base + 1.0], dtype=np.float64)
            column = rng.choice(pool, VERIFY_ROWS)
            column[rng.random(VERIFY_ROWS) < 0.05] = np.nan
            columns.append(column)
        matrix = np.column_stack(columns) if columns else np.zeros((VERIFY_ROWS, 0))
        probe = [dict(self.defaults) for _ in range(2)]
        for i, name in enumerate(self.names):
            if self._known_categories(name) is None:
                probe[1][name] = (self.defaults.get(name) or 0.0) + (i % 3)
        return np.vstack([matrix, self._matrix(probe)])

    def _known_categories(self, name: str) -> list[str] | None:
        """The categories of a categorical input in the training statistics (None for a
        numeric input)."""
        if self.names.index(name) not in self._categorical:
            return None
        stats = (self.bundle.training_stats or {}).get(name) or {}
        return [k for k in stats.get("frequencies") or {} if k != "__other__"]

    def served_version(self) -> ServedVersion:
        return ServedVersion(self.variant, self.variant_reason, self.scoring)

    # -- answers -----------------------------------------------------------------------------

    def _scores_slow(self, frame: Any) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.predictor.predict(frame), dtype=np.float64)
        return np.asarray(self.predictor.predict_proba(frame), dtype=np.float64)

    def predict(
        self, rows: Sequence[Mapping[str, Any]], *, explain: bool = False, all_scores: bool = False
    ) -> list[RowResult]:
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

    def _predict_many(
        self, rows: Sequence[Mapping[str, Any]], explain: bool, all_scores: bool
    ) -> list[RowResult]:
        frame = None
        if self.fast:
            scores = self._raw_scores(self._matrix(rows))
        else:
            import pandas as pd

            frame = pd.DataFrame(list(rows), columns=self.names)
            scores = self._scores_slow(frame)
        results = self._results(scores, all_scores)
        if self.vocabulary:
            self._flag_unseen(rows, results)
        if explain:
            import pandas as pd

            frame = frame if frame is not None else pd.DataFrame(list(rows), columns=self.names)
            found = self.predictor.contributions(frame)
            if found is not None:
                values, names = found
                for result, line in zip(results, np.asarray(values), strict=False):
                    result.contributions = {n: float(v) for n, v in zip(names, line, strict=False)}
            else:
                self._occlusion(frame, results)
        return results

    def _flag_unseen(self, rows: Sequence[Mapping[str, Any]], results: list[RowResult]) -> None:
        for row, result in zip(rows, results, strict=True):
            for name, known in self.vocabulary.items():
                value = row.get(name)
                if value is not None and str(value) not in known:
                    result.unseen.append(name)
                    result.warnings.append(
                        f"feature {name}: category {str(value)!r} was not seen in training "
                        "(the model treats it as unknown)"
                    )

    def _occlusion(self, frame: Any, results: list[RowResult]) -> None:
        """Contributions for a model with none of its own (ensembles, linear and bagged
        models): occlusion against rows drawn from the bundle's training statistics (see
        :mod:`atlas_core.bundles._occlusion`). One extra scoring call per request."""
        from atlas_core.bundles import (
            background_from_stats,
            background_rows,
            occlusion_contributions,
        )

        size = background_rows(len(frame), len(self.names))
        reference = background_from_stats(self.bundle.training_stats, self.names, size)
        base = self._scores_slow(frame)
        column = None if base.ndim == 1 else base.argmax(axis=1)
        _, values, _ = occlusion_contributions(self._scores_slow, frame, reference, column)
        for result, line in zip(results, values.tolist(), strict=True):
            result.contributions.update(zip(self.names, line, strict=True))
            result.warnings.append(
                "the model has no built-in contributions: each is how much the answered score "
                f"moves when that feature takes {size} typical training values instead of "
                "this row's (occlusion against the training distribution)"
            )

    def _results(self, scores: np.ndarray, all_scores: bool) -> list[RowResult]:
        """One result per row of ``scores`` (vectorised: one argmax and one tolist)."""
        if self.task == "regression" or scores.ndim != 2:
            return [self._result(s, all_scores) for s in scores]
        classes = self.classes
        n_classes = len(classes)
        out = []
        for best, line in zip(scores.argmax(axis=1).tolist(), scores.tolist(), strict=True):
            label = classes[best] if best < n_classes else str(best)
            value = line[best]
            out.append(
                RowResult(
                    label=label,
                    value=value,
                    scores=dict(zip(classes, line)) if all_scores else {label: value},
                    probs=line,
                )
            )
        return out

    def _result(self, score: Any, all_scores: bool) -> RowResult:
        if self.task == "regression":
            return RowResult(value=float(score))
        best = int(np.argmax(score))
        label = self.classes[best] if best < len(self.classes) else str(best)
        result = RowResult(label=label, value=float(score[best]), probs=score.tolist())
        result.scores = (
            {c: float(p) for c, p in zip(self.classes, score, strict=False)}
            if all_scores
            else {label: result.value}
        )
        return result


def _estimator_scores(model: Any, task: str, matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "regression":
            return np.asarray(model.predict(matrix), dtype=np.float64)
        return np.asarray(model.predict_proba(matrix), dtype=np.float64)


def _has_inf(matrix: np.ndarray, numbers: Sequence[int]) -> bool:
    if matrix.dtype != object:
        return bool(np.isinf(matrix).any())
    return bool(np.isinf(matrix[:, numbers].astype(np.float64)).any())


def _is_number(value: Any) -> bool:
    return value is None or isinstance(value, _NUMBER_TYPES)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, _NUMBER_TYPES):
        return float(value)
    raise TypeError(value)


def _vocabulary(training_stats: Mapping[str, Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Every category training saw, per categorical feature whose vocabulary was kept whole
    (no ``__other__`` share: a truncated one cannot tell unseen from rare)."""
    return {
        name: frozenset(k for k in stats["frequencies"] if k != "__other__")
        for name, stats in (training_stats or {}).items()
        if stats.get("kind") == "categorical"
        and stats.get("frequencies")
        and not stats["frequencies"].get("__other__")
    }


def _defaults(training_stats: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Training-data defaults for the DEFAULTS fallback: the bin holding the median for
    numbers (its edge), the most frequent value for categories."""
    out: dict[str, Any] = {}
    for name, stats in (training_stats or {}).items():
        if "frequencies" in stats:
            freqs = {k: v for k, v in stats["frequencies"].items() if k != "__other__"}
            out[name] = max(freqs, key=lambda k: freqs[k]) if freqs else None
        else:
            sample = stats.get("sample") or []
            out[name] = float(sample[len(sample) // 2]) if sample else stats.get("mean")
    return out

"""Which captured requests of an endpoint are bad cases (runs in the bad-case job process).

Candidates are the captured rows (live variants) of the window; each is checked against the
asked reasons:

* LOW_CONFIDENCE: a classifier's captured top probability (``value``) below the threshold;
* HIGH_DRIFT: the row's drift score (atlas_core.bundles.drift.row_drift_scores against the
  training statistics of the model version that answered) at least the threshold;
* SHADOW_DISAGREEMENT: a shadow's answer on the same request, from the prediction index
  (shadows are recorded under the live prediction's id), is another class, or a value more
  than the tolerance away;
* WRONG_BY_GROUND_TRUTH: the outcome attached to the prediction differs likewise.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from atlas_core.storage import ArtifactStore
from atlas_serving.bundle_access import resolve_artifact
from atlas_serving.control.registry import Registry
from atlas_serving.domain import BadCaseReason, BadCaseSelection, BundleRef, EndpointSpec
from atlas_serving.monitoring.alerts import list_capture_files
from atlas_serving.tables import ground_truth, predictions

DEFAULT_MAX_CONFIDENCE = 0.6
DEFAULT_MIN_DRIFT_SCORE = 0.99
DEFAULT_MAX_ITEMS = 10_000
FEATURE_PREFIX = "f_"
_CHUNK = 500  # prediction ids per index query


@dataclass
class Case:
    """One selected captured row; ``reasons`` are BadCaseReason names in lower case."""

    prediction_id: str
    row: int
    model_name: str
    model_version: int
    variant: str
    time_us: int
    label: str
    value: float
    regression: bool
    features: dict[str, Any]
    entity: str = ""
    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def version_name(self) -> str:
        return f"{self.model_name}:{self.model_version}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @staticmethod
    def from_json(line: str) -> Case:
        return Case(**json.loads(line))


def select_cases(
    engine: Engine,
    store: ArtifactStore,
    registry: Registry,
    endpoint: EndpointSpec,
    variant: str,
    start_us: int | None,
    end_us: int,
    selection: BadCaseSelection,
) -> tuple[list[Case], int]:
    """(the selected cases, most reasons first then least confident, at most max_items;
    the captured rows scanned)."""
    import pandas as pd

    files, _ = list_capture_files(engine, endpoint.name, start_us, end_us, 0, 1_000_000)
    frames = []
    for f in files:
        if variant and f.variant != variant:
            continue
        frame = pd.read_parquet(
            io.BytesIO(store.get_bytes(resolve_artifact(store, BundleRef(f.uri, f.sha256, f.size))))
        )
        if "prediction_row" not in frame.columns:  # captured before rows were recorded
            frame["prediction_row"] = frame.groupby("prediction_id").cumcount()
        frames.append(frame)
    if not frames:
        return [], 0
    data = pd.concat(frames, ignore_index=True)
    data = data[data["time_us"] < end_us]
    if start_us is not None:
        data = data[data["time_us"] >= start_us]
    data = data.drop_duplicates(["prediction_id", "prediction_row"]).reset_index(drop=True)
    if not len(data):
        return [], 0
    models = {v.name: v.model.model_name for v in endpoint.variants}
    fallback = endpoint.variants[0].model.model_name if endpoint.variants else ""
    reasons = set(selection.reasons)
    cases = [_case(row, models.get(str(row["variant"]), fallback)) for row in _rows(data)]
    tasks = {(c.model_name, c.model_version) for c in cases}
    info = {key: registry.get(*key) for key in tasks}
    for c in cases:
        c.regression = info[(c.model_name, c.model_version)].task_type == "regression"
    if BadCaseReason.LOW_CONFIDENCE in reasons:
        limit = selection.max_confidence or DEFAULT_MAX_CONFIDENCE
        for c in cases:
            if not c.regression and c.value < limit:
                c.reasons.append("low_confidence")
                c.details.append(f"confidence {c.value:.3f} < {limit:g}")
    if BadCaseReason.HIGH_DRIFT in reasons:
        _drift(store, data, cases, info, selection.min_drift_score or DEFAULT_MIN_DRIFT_SCORE)
    if reasons & {BadCaseReason.SHADOW_DISAGREEMENT, BadCaseReason.WRONG_BY_GROUND_TRUTH}:
        _indexed(engine, endpoint.name, cases, reasons, selection.regression_tolerance)
    chosen = [c for c in cases if c.reasons]
    chosen.sort(
        key=lambda c: (
            -len(c.reasons),
            0.0 if c.regression else c.value,
            c.time_us,
            c.prediction_id,
            c.row,
        )
    )
    return chosen[: selection.max_items or DEFAULT_MAX_ITEMS], len(data)


def _rows(data: Any) -> Iterable[dict[str, Any]]:
    return data.to_dict("records")


def _case(row: dict[str, Any], model_name: str) -> Case:
    features = {
        k[len(FEATURE_PREFIX) :]: _plain(v) for k, v in row.items() if k.startswith(FEATURE_PREFIX)
    }
    value = row.get("value")
    return Case(
        prediction_id=str(row["prediction_id"]),
        row=int(row["prediction_row"]),
        model_name=model_name,
        model_version=int(row["model_version"]),
        variant=str(row["variant"]),
        time_us=int(row["time_us"]),
        label=str(row.get("label") or ""),
        value=float(value) if value is not None else math.nan,
        regression=False,
        features=features,
    )


def _plain(v: Any) -> Any:
    """A JSON-able Python value (NumPy scalars unwrapped, NaN as None)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _drift(
    store: ArtifactStore,
    data: Any,
    cases: Sequence[Case],
    info: dict[tuple[str, int], Any],
    threshold: float,
) -> None:
    import numpy as np
    import pandas as pd

    from atlas_core.bundles import read_manifest
    from atlas_core.bundles.drift import row_drift_scores

    features = data[[c for c in data.columns if c.startswith(FEATURE_PREFIX)]]
    features.columns = [c[len(FEATURE_PREFIX) :] for c in features.columns]
    versions = np.array([(c.model_name, c.model_version) for c in cases], dtype=object)
    for key, version in info.items():
        if not version.has_training_stats:
            continue
        manifest = read_manifest(store, resolve_artifact(store, version.bundle))
        mask = np.array([tuple(v) == key for v in versions], dtype=bool)
        if not mask.any():
            continue
        scores, which = row_drift_scores(
            manifest["training_stats"]["features"], pd.DataFrame(features[mask])
        )
        for i, score, name in zip(np.flatnonzero(mask), scores, which, strict=True):
            if score >= threshold:
                c = cases[i]
                c.reasons.append("high_drift")
                c.details.append(f"{name}={c.features.get(name)!r} drift score {score:.3f}")


def _indexed(
    engine: Engine,
    endpoint: str,
    cases: Sequence[Case],
    reasons: set[BadCaseReason],
    tolerance: float,
) -> None:
    by_key = {(c.prediction_id, c.row): c for c in cases}
    ids = sorted({c.prediction_id for c in cases})
    p, g = predictions.c, ground_truth.c
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for r in conn.execute(
                select(p.prediction_id, p.row, p.variant, p.shadow, p.label, p.value, p.entity_key)
                .where((p.endpoint_name == endpoint) & p.prediction_id.in_(chunk))
                .order_by(p.prediction_id, p.row, p.variant)
            ):
                c = by_key.get((r.prediction_id, r.row))
                if c is None:
                    continue
                if not r.shadow:
                    c.entity = r.entity_key or ""
                elif BadCaseReason.SHADOW_DISAGREEMENT in reasons and _differs(
                    c, r.label, r.value, tolerance
                ):
                    if "shadow_disagreement" not in c.reasons:
                        c.reasons.append("shadow_disagreement")
                    c.details.append(f"shadow {r.variant} answered {_answer(c, r.label, r.value)}")
            if BadCaseReason.WRONG_BY_GROUND_TRUTH not in reasons:
                continue
            for t in conn.execute(
                select(g.prediction_id, g.row, g.outcome, g.value).where(
                    (g.endpoint_name == endpoint) & g.prediction_id.in_(chunk)
                )
            ):
                c = by_key.get((t.prediction_id, t.row))
                if c is not None and _differs(c, t.outcome, t.value, tolerance):
                    c.reasons.append("wrong_by_ground_truth")
                    c.details.append(f"ground truth {_answer(c, t.outcome, t.value)}")


def _differs(c: Case, label: str, value: float | None, tolerance: float) -> bool:
    if c.regression:
        return value is not None and abs(float(value) - c.value) > tolerance
    return str(label) != c.label


def _answer(c: Case, label: str, value: float | None) -> str:
    return f"{value:.4g}" if c.regression and value is not None else repr(str(label))

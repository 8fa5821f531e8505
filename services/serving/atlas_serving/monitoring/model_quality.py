"""Quality reports of an endpoint's variants from their labeled predictions, and the
challenger-vs-champion comparisons that rollouts gate on. Blocking: run in threads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas_serving.domain import EndpointSpec, QualityReport, VariantQuality, VariantRole
from atlas_serving.monitoring import quality as q
from atlas_serving.monitoring.ground_truth import GroundTruthStore, ModelInfo


@dataclass(frozen=True)
class Sides:
    """Labeled counts and the challenger-minus-champion difference (None: not computable)."""

    challenger: int
    champion: int
    difference: q.Difference | None


class ModelQuality:
    def __init__(self, store: GroundTruthStore, model_info: ModelInfo, resamples: int) -> None:
        self.store = store
        self.model_info = model_info
        self.resamples = resamples

    def task_of(self, spec: EndpointSpec) -> tuple[str, list[str]]:
        live = [v for v in spec.variants if v.role != VariantRole.SHADOW] or list(spec.variants)
        if not live:
            return "binary", []
        top = max(live, key=lambda v: v.weight)
        return self.model_info(top.model.model_name, top.resolved_version)

    def _classes(self, rows: Sequence[Any]) -> list[str]:
        return self.model_info(rows[0].model_name, rows[0].model_version)[1] if rows else []

    def _read(
        self, task: str, endpoint: str, start_us: int, end_us: int
    ) -> tuple[dict[tuple[str, int, bool], q.Labeled], q.Labeled, Counter[str]]:
        """Per (variant, version, shadow) group and all live rows, as compact arrays built
        batch by batch (never every row object of the window at once); live answers by
        variant."""
        parts: dict[tuple[str, int, bool], list[q.Labeled]] = {}
        classes: dict[tuple[str, int, bool], list[str]] = {}
        live_parts: list[q.Labeled] = []
        live_classes: list[str] | None = None
        answered_by: Counter[str] = Counter()
        for batch in self.store.labeled(endpoint, start_us, end_us):
            groups: dict[tuple[str, int, bool], list[Any]] = {}
            for r in batch:
                groups.setdefault((r.variant, r.model_version, bool(r.shadow)), []).append(r)
            live_rows = [r for r in batch if not r.shadow]
            if live_rows:
                if live_classes is None:
                    live_classes = self._classes(live_rows)
                live_parts.append(q.labeled_from_rows(task, live_classes, live_rows))
                answered_by.update(r.variant for r in live_rows)
            for key, members in groups.items():
                if key not in classes:
                    classes[key] = self._classes(members)
                parts.setdefault(key, []).append(q.labeled_from_rows(task, classes[key], members))
        out = {key: q.concat(task, classes[key], p) for key, p in parts.items()}
        return out, q.concat(task, live_classes or [], live_parts), answered_by

    def report(
        self, spec: EndpointSpec, start_us: int, end_us: int, variant: str = "", metric: str = ""
    ) -> QualityReport:
        """Per (variant, model version) seen in the window; shadows paired with live."""
        task, _ = self.task_of(spec)
        metric = q.check_metric(task, metric)
        groups, live, answered_by = self._read(task, spec.name, start_us, end_us)
        out = QualityReport(task=task, start_us=start_us, end_us=end_us)
        for (name, version, shadow), data in sorted(groups.items(), key=lambda kv: kv[0]):
            if variant and name != variant:
                continue
            vq = VariantQuality(
                variant=name,
                model_version=version,
                labeled=len(data),
                metrics=q.estimates(data, self.resamples),
                shadow=shadow,
            )
            if shadow and len(live):
                diff = q.paired_difference(metric, data, live, self.resamples)
                if diff is not None:
                    baseline = answered_by.most_common(1)[0][0]
                    vq.paired = q.comparison(baseline, diff)
            out.variants.append(vq)
        return out

    def compare(
        self,
        spec: EndpointSpec,
        since_us: int,
        challengers: Collection[str],
        champions: Collection[str],
        metric: str,
        *,
        paired: bool,
    ) -> Sides:
        """Challenger variants against champion variants on predictions since ``since_us``:
        paired on the same requests (shadows) or unpaired (split traffic)."""
        task, _ = self.task_of(spec)
        metric = q.check_metric(task, metric)
        groups, _, _ = self._read(task, spec.name, since_us, 2**62)
        mine = [d for (v, _, _), d in sorted(groups.items()) if v in challengers]
        theirs = [d for (v, _, s), d in sorted(groups.items()) if v in champions and not s]
        a = q.concat(task, mine[0].classes if mine else [], mine)
        b = q.concat(task, theirs[0].classes if theirs else [], theirs)
        if paired:
            keys = set(a.keys) & set(b.keys)
            n = len(keys)
            diff = q.paired_difference(metric, a, b, self.resamples) if n else None
            return Sides(n, n, diff)
        diff = q.unpaired_difference(metric, a, b, self.resamples) if len(a) and len(b) else None
        return Sides(len(a), len(b), diff)


def finite(value: float) -> float:
    return value if np.isfinite(value) else 0.0

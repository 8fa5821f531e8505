"""Quality reports of an endpoint's variants from their labeled predictions, and the
challenger-vs-champion comparisons that rollouts gate on. Blocking: run in threads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
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

    def _labeled(self, task: str, rows: list[dict[str, Any]]) -> q.Labeled:
        if not rows:
            return q.labeled_from_rows(task, [], [])
        _, classes = self.model_info(rows[0]["model_name"], rows[0]["model_version"])
        return q.labeled_from_rows(task, classes, rows)

    def report(
        self, spec: EndpointSpec, start_us: int, end_us: int, variant: str = "", metric: str = ""
    ) -> QualityReport:
        """Per (variant, model version) seen in the window; shadows paired with live."""
        task, _ = self.task_of(spec)
        metric = q.check_metric(task, metric)
        rows = self.store.labeled(spec.name, start_us, end_us)
        groups: dict[tuple[str, int, bool], list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault((r["variant"], r["model_version"], bool(r["shadow"])), []).append(r)
        live_rows = [r for r in rows if not r["shadow"]]
        live = self._labeled(task, live_rows)
        answered_by = Counter(r["variant"] for r in live_rows)
        out = QualityReport(task=task, start_us=start_us, end_us=end_us)
        for (name, version, shadow), members in sorted(groups.items()):
            if variant and name != variant:
                continue
            data = self._labeled(task, members)
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
        rows = self.store.labeled(spec.name, since_us, 2**62)
        mine = [r for r in rows if r["variant"] in challengers]
        theirs = [r for r in rows if r["variant"] in champions and not r["shadow"]]
        a, b = self._labeled(task, mine), self._labeled(task, theirs)
        if paired:
            keys = set(a.keys) & set(b.keys)
            n = len(keys)
            diff = q.paired_difference(metric, a, b, self.resamples) if n else None
            return Sides(n, n, diff)
        diff = q.unpaired_difference(metric, a, b, self.resamples) if len(a) and len(b) else None
        return Sides(len(a), len(b), diff)


def finite(value: float) -> float:
    return value if np.isfinite(value) else 0.0

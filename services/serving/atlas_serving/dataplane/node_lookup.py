"""A node-lookup bundle (a graph model's precomputed answers) ready to answer rows by node id.

Answering is a binary search over the node ids, no DataFrame and no model call, so a
single row is answered on the event loop (its measured cost is the model's
``single_row_seconds``, see batching) and a batch in one vectorised lookup. Everything else
— endpoints, rollouts, capture, ground truth — sees an ordinary servable model whose one
input feature is ``node_id``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from atlas_core.errors import InvalidArgument
from atlas_core.ml import NODE_ID, NodeLookup
from atlas_serving.dataplane.inference import RowResult, ServableModel


def servable(bundle: Any, *, compile_all: bool = True) -> ServableModel:
    """The servable model of a loaded bundle: node lookups get their own answering
    (``compile_all``: see ServableModel)."""
    if isinstance(bundle.predictor.model, NodeLookup):
        return NodeLookupModel(bundle)
    return ServableModel(bundle, compile_all=compile_all)


class NodeLookupModel(ServableModel):
    """One node-lookup model version in memory (shares ServableModel's interface only: the
    tabular scoring machinery does not apply to a lookup)."""

    scoring = "lookup"

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.predictor = bundle.predictor
        self.schema = bundle.input_schema
        self.lookup: NodeLookup = bundle.predictor.model
        self.names = [NODE_ID]
        self.name_set = frozenset(self.names)
        self.unused: frozenset[str] = frozenset()
        self.task = bundle.task
        self.classes = [str(c) for c in (bundle.classes or [])]
        self.memory_bytes = max(int(getattr(bundle, "memory_bytes", 0) or 0), self.lookup.nbytes)
        self.load_seconds = float(bundle.load_seconds)
        self.defaults: dict[str, Any] = {}  # no node id stands in for a missing one
        self.single_row_seconds = self._time_single_row()

    def _time_single_row(self) -> float:
        """The best of a few one-row answers (thread CPU time: robust to a busy host)."""
        row = [{NODE_ID: self.lookup.ids[0].item()}]
        best = math.inf
        for _ in range(20):
            start = time.thread_time()
            self.predict(row)
            best = min(best, time.thread_time() - start)
        return best

    def predict(
        self, rows: Sequence[Mapping[str, Any]], *, explain: bool = False, all_scores: bool = False
    ) -> list[RowResult]:
        """One result per row; a row with an unknown or mistyped node id gets its own error
        (a single row raises it)."""
        ids = [row[NODE_ID] for row in rows]
        try:
            return self._answers(self.lookup.rows(ids).tolist(), all_scores)
        except InvalidArgument:
            if len(rows) == 1:
                raise
        out = []
        for node in ids:  # isolate the bad rows; the others still get answers
            try:
                out.extend(self._answers(self.lookup.rows([node]).tolist(), all_scores))
            except InvalidArgument as exc:
                out.append(RowResult(error=exc))
        return out

    def _answers(self, positions: list[int], all_scores: bool) -> list[RowResult]:
        classes = self.classes
        out = []
        for line in self.lookup.probabilities[positions].tolist():
            best = max(range(len(line)), key=line.__getitem__)
            label, value = classes[best], line[best]
            out.append(
                RowResult(
                    label=label,
                    value=value,
                    scores=dict(zip(classes, line, strict=True)) if all_scores else {label: value},
                    probs=line,
                )
            )
        return out

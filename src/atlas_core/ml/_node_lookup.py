"""A graph model's answers for every node, looked up by original node id.

A GNN's prediction for a node depends on its neighbourhood, so a graph job computes every
node's class probabilities once, after training, over the whole graph; this
table is what a model bundle then holds for serving. It is transductive: a node the graph did
not have at training time has no answer (a new train job includes it).

Ids are kept sorted (int64, or UTF-8 bytes for string graphs, as the graph service keeps
originals), so a lookup is one binary search and the table costs the arrays alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from atlas_core.errors import InvalidArgument

NODE_ID = "node_id"


class NodeLookup:
    """``predict`` / ``predict_proba`` over frames with a ``node_id`` column (the bundle
    contract), plus :meth:`rows` for callers that hold ids already.

    ``node_ids``: original ids (int64, or str/bytes for string graphs), unique;
    ``probabilities``: ``[n, n_classes]`` in ``classes`` order. Read-only after construction,
    so thread-safe.
    """

    def __init__(
        self,
        node_ids: np.ndarray | Sequence[Any],
        probabilities: np.ndarray,
        classes: Sequence[Any],
    ) -> None:
        ids = np.asarray(node_ids)
        if ids.dtype.kind in "UO":
            ids = np.asarray([str(v).encode() for v in ids], dtype=bytes)
        elif ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        elif ids.dtype.kind != "S":
            raise InvalidArgument(
                f"node ids must be integers or strings, got {ids.dtype}", reason="INVALID_MODEL"
            )
        if not len(ids):
            raise InvalidArgument("a node lookup needs at least one node", reason="INVALID_MODEL")
        probs = np.asarray(probabilities, dtype=np.float32)
        if probs.ndim != 2 or len(probs) != len(ids) or probs.shape[1] != len(classes):
            raise InvalidArgument(
                f"probabilities must be [{len(ids)}, {len(classes)}], got {probs.shape}",
                reason="INVALID_MODEL",
            )
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        if len(self.ids) > 1 and np.any(self.ids[1:] == self.ids[:-1]):
            dup = self.ids[1:][self.ids[1:] == self.ids[:-1]][0]
            raise InvalidArgument(f"node id {_show(dup)!r} appears twice", reason="INVALID_MODEL")
        self.probabilities = probs[order]
        self.classes_ = np.asarray(list(classes))
        self.string_ids = self.ids.dtype.kind == "S"

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.probabilities.nbytes)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, node_ids: Sequence[Any]) -> np.ndarray:
        """Row of each id, in order. Raises InvalidArgument naming the first id that is
        mistyped (``MISTYPED_FEATURES``) or not a node of the graph (``UNKNOWN_NODE_ID``)."""
        keys = self._keys(node_ids)
        pos = np.searchsorted(self.ids, keys)
        inside = np.minimum(pos, len(self.ids) - 1)
        hit = (pos < len(self.ids)) & (self.ids[inside] == keys)
        if not hit.all():
            bad = node_ids[int(np.argmin(hit))]
            raise InvalidArgument(
                f"node id {bad!r} is not a node of the graph this model was trained on "
                "(answers are computed for the graph at training time: train again to "
                "include new nodes)",
                reason="UNKNOWN_NODE_ID",
                metadata={NODE_ID: str(bad)},
            )
        return pos

    def _keys(self, node_ids: Sequence[Any]) -> np.ndarray:
        if self.string_ids:
            encoded = []
            for value in node_ids:
                if isinstance(value, bool) or not isinstance(value, str | int | bytes):
                    raise _mistyped(value, "a string")
                encoded.append(value if isinstance(value, bytes) else str(value).encode())
            width = self.ids.dtype.itemsize
            # Longer than every stored id: it cannot match, and must not match once truncated.
            return np.asarray([v if len(v) <= width else b"\xff" * width for v in encoded]).astype(
                self.ids.dtype
            )
        keys = np.empty(len(node_ids), dtype=np.int64)
        for i, value in enumerate(node_ids):
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer):
                raise _mistyped(value, "an integer")
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                raise _mistyped(value, "an integer")
            keys[i] = int(value)
        return keys

    def predict_proba(self, frame: Any) -> np.ndarray:
        return self.probabilities[self.rows(list(frame[NODE_ID]))].astype(np.float64)

    def predict(self, frame: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(frame).argmax(axis=1)]


def _show(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _mistyped(value: Any, expected: str) -> InvalidArgument:
    return InvalidArgument(
        f"mistyped features: {NODE_ID} ({expected} node id is expected, got {value!r})",
        reason="MISTYPED_FEATURES",
        metadata={"mistyped": NODE_ID},
    )

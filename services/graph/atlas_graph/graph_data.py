"""The in-memory form of an imported graph and its one-file storage format.

Nodes are numbered densely 0..N-1 in import order ("import ids"); ``original_ids[i]`` is the
id the user gave node i (int64, or UTF-8 bytes for string graphs). Edges are numbered by their
row in the imported (filtered) edge list, which is therefore their original id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ID_INT64 = "int64"
ID_STRING = "string"


class NodeTable:
    """What a homogeneous graph and one node type of a heterogeneous graph share: sizes and
    label facts read off their node arrays."""

    original_ids: np.ndarray
    feat: np.ndarray | None
    label: np.ndarray | None
    train_mask: np.ndarray | None

    @property
    def num_nodes(self) -> int:
        return int(len(self.original_ids))

    @property
    def feature_dims(self) -> int:
        return 0 if self.feat is None else int(self.feat.shape[1])

    @property
    def num_classes(self) -> int:
        if self.label is None or not len(self.label):
            return 0
        return int(self.label.max()) + 1

    @property
    def has_masks(self) -> bool:
        return self.train_mask is not None


@dataclass
class GraphData(NodeTable):
    src: np.ndarray
    dst: np.ndarray
    original_ids: np.ndarray
    id_type: str
    feat: np.ndarray | None = None
    label: np.ndarray | None = None  # int64, -1 = unlabelled
    train_mask: np.ndarray | None = None
    val_mask: np.ndarray | None = None
    test_mask: np.ndarray | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def num_edges(self) -> int:
        return int(len(self.src))

    def save(self, path: Path) -> None:
        """One uncompressed .npz (no pickles): fast to write and read back."""
        arrays = {"src": self.src, "dst": self.dst, "original_ids": self.original_ids}
        for name in ("feat", "label", "train_mask", "val_mask", "test_mask"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> GraphData:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        original = arrays.pop("original_ids")
        id_type = ID_STRING if original.dtype.kind == "S" else ID_INT64
        return cls(original_ids=original, id_type=id_type, **arrays)

    def to_dgl(self):
        """A homogeneous DGLGraph with ndata feat/label/masks (lazy dgl import)."""
        import dgl
        import torch

        g = dgl.graph(
            (torch.from_numpy(self.src), torch.from_numpy(self.dst)), num_nodes=self.num_nodes
        )
        if self.feat is not None:
            g.ndata["feat"] = torch.from_numpy(np.ascontiguousarray(self.feat, np.float32))
        if self.label is not None:
            g.ndata["label"] = torch.from_numpy(self.label.astype(np.int64))
        for name in ("train_mask", "val_mask", "test_mask"):
            value = getattr(self, name)
            if value is not None:
                g.ndata[name] = torch.from_numpy(value.astype(bool))
        return g


def random_split(
    n: int, train: float, val: float, seed: int, labelled: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Train/val/test masks over the labelled nodes, fixed by ``seed``."""
    train = train or 0.6
    val = val if val else 0.2
    rng = np.random.default_rng(seed)
    draw = rng.random(n)
    ok = np.ones(n, bool) if labelled is None else labelled
    train_mask = ok & (draw < train)
    val_mask = ok & (draw >= train) & (draw < train + val)
    test_mask = ok & (draw >= train + val)
    return train_mask, val_mask, test_mask

"""Node-lookup bundles: a graph model's answer for every node, as a model bundle.

The graph service writes one at the end of a train job; serving registers and serves it like
any bundle (endpoints, rollouts, capture, ground truth). It is an ordinary bundle — same
manifest layout, checksums and loader — whose model is :class:`atlas_core.ml.NodeLookup`
(recorded in ``manifest.model.class``): the input schema is one column, ``node_id`` (int64 or
string, as the graph was imported), and the drift baselines are those of the node ids asked
about and of the predicted classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.bundle_signing import BundleSigner
from atlas_core.bundles._writer import write_bundle
from atlas_core.ml import NODE_ID, NodeLookup
from atlas_core.storage import ArtifactRef, ArtifactStore


def write_node_lookup_bundle(
    store: ArtifactStore,
    key: str,
    *,
    node_ids: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    metrics: Mapping[str, float],
    lineage: Mapping[str, Any],
    signer: BundleSigner | None,
    target: str = "label",
) -> ArtifactRef:
    """Publish every node's class probabilities under ``key``.

    ``node_ids`` are the original ids (int64, or UTF-8 bytes/str), ``probabilities`` is
    ``[n, n_classes]`` with classes ``0..n_classes-1`` (the graph's label codes), ``labels``
    the graph's label per node (``-1`` = unlabelled) for the label baseline. ``signer``
    signs it like any bundle (serving refuses unsigned ones).

    Raises:
        InvalidArgument: shapes that do not line up, duplicate ids, fewer than two classes.
    """
    classes = list(range(np.asarray(probabilities).shape[1]))
    model = NodeLookup(node_ids, probabilities, classes)
    ids = np.asarray(node_ids)
    column = (
        pd.Series([v.decode() if isinstance(v, bytes) else str(v) for v in ids], dtype=object)
        if ids.dtype.kind in "SUO"
        else pd.Series(ids.astype(np.int64))
    )
    known = np.asarray(labels, dtype=np.int64)
    return write_bundle(
        store,
        key,
        model=model,
        task="binary" if len(classes) == 2 else "multiclass",
        target=target,
        classes=classes,
        X_train=pd.DataFrame({NODE_ID: column}),
        y_train=pd.Series(known, dtype="Int64").mask(known < 0),
        metrics=metrics,
        lineage=lineage,
        signer=signer,
    )

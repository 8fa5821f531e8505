"""A stochastic block model with learnable labels, for demos and benchmarks.

``generate_sbm(nodes, communities, average_degree, intra_fraction, feature_dims,
feature_noise, seed)``: node i belongs to community ``i % communities`` (its label). Each node
draws about ``average_degree / 2`` out-edges; a fraction ``intra_fraction`` of them goes to a
uniformly random node of its own community, the rest to any node. Features are a
community-specific random unit direction (fixed by the seed) plus Gaussian noise of standard
deviation ``feature_noise``: with high noise the features alone are weak and a GNN must use
the neighbourhood, which is what makes the labels recoverable from structure. The same
arguments always give the same graph.
"""

from __future__ import annotations

import numpy as np

from atlas_core.errors import InvalidArgument
from atlas_graph.graph_data import ID_INT64, ID_STRING, GraphData, random_split
from atlas_graph.hetero import HeteroGraphData, NodeType, hetero_split


def generate_sbm(
    nodes: int,
    communities: int = 8,
    average_degree: float = 10.0,
    intra_fraction: float = 0.8,
    feature_dims: int = 16,
    feature_noise: float = 1.0,
    train_fraction: float = 0.6,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> GraphData:
    if nodes < 2:
        raise InvalidArgument("generate.nodes must be at least 2", reason="BAD_NODES")
    if not 1 <= communities <= nodes:
        raise InvalidArgument("generate.communities must be in 1..nodes", reason="BAD_COMMUNITIES")
    if not 0 < intra_fraction <= 1:
        raise InvalidArgument("generate.intra_fraction must be in (0, 1]", reason="BAD_FRACTION")
    if average_degree <= 0 or feature_dims < 1:
        raise InvalidArgument(
            "generate.average_degree and feature_dims must be positive", reason="BAD_SIZE"
        )
    rng = np.random.default_rng(seed)
    label = np.arange(nodes, dtype=np.int64) % communities
    per_node = max(1, int(round(average_degree / 2)))
    src = np.repeat(np.arange(nodes, dtype=np.int64), per_node)
    intra = rng.random(len(src)) < intra_fraction
    dst = rng.integers(0, nodes, len(src), dtype=np.int64)
    # A random member of the same community: same residue modulo `communities`.
    size = (nodes - label[src] + communities - 1) // communities
    same = label[src] + communities * (rng.random(len(src)) * size).astype(np.int64)
    dst = np.where(intra, same, dst)
    directions = rng.normal(size=(communities, feature_dims))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    feat = (directions[label] + rng.normal(scale=feature_noise, size=(nodes, feature_dims))).astype(
        np.float32
    )
    train, val, test = random_split(nodes, train_fraction, val_fraction, seed + 1)
    # Undirected: both directions, as message passing should see neighbours either way.
    return GraphData(
        src=np.concatenate([src, dst]),
        dst=np.concatenate([dst, src]),
        original_ids=np.arange(nodes, dtype=np.int64),
        id_type=ID_INT64,
        feat=feat,
        label=label,
        train_mask=train,
        val_mask=val,
        test_mask=test,
    )


def generate_hetero(
    users: int,
    devices: int,
    merchants: int,
    communities: int = 4,
    devices_per_user: int = 3,
    merchants_per_user: int = 3,
    intra_fraction: float = 0.8,
    feature_dims: int = 8,
    feature_noise: float = 2.0,
    train_fraction: float = 0.6,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> HeteroGraphData:
    """Users x devices x merchants with community structure (demos, tests, benchmarks).

    User i, device j and merchant k belong to communities ``i % C``, ``j % C``, ``k % C``;
    users are labelled by their community. Each user uses ``devices_per_user`` devices and pays
    ``merchants_per_user`` merchants, a fraction ``intra_fraction`` of them in its own
    community. User features are a community direction plus heavy noise (weak alone), merchant
    features are pure noise, devices have none: the labels are recoverable through the
    relations (user -> device -> user). Both directions of each relation are stored
    (``uses``/``used_by``, ``pays``/``paid_by``). Original ids differ per type: users
    ``1000 + 7 i`` (int64), devices ``"dev-<j>"`` (string), merchants ``50 + k`` (int64). The
    same arguments always give the same graph.
    """
    if min(users, devices, merchants) < communities or communities < 1:
        raise InvalidArgument(
            "every type needs at least one node per community", reason="BAD_COMMUNITIES"
        )
    rng = np.random.default_rng(seed)
    label = np.arange(users, dtype=np.int64) % communities

    def links(per_user: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        src = np.repeat(np.arange(users, dtype=np.int64), per_user)
        intra = rng.random(len(src)) < intra_fraction
        size = (n - label[src] + communities - 1) // communities
        same = label[src] + communities * (rng.random(len(src)) * size).astype(np.int64)
        return src, np.where(intra, same, rng.integers(0, n, len(src), dtype=np.int64))

    uses, pays = links(devices_per_user, devices), links(merchants_per_user, merchants)
    directions = rng.normal(size=(communities, feature_dims))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    user_feat = directions[label] + rng.normal(scale=feature_noise, size=(users, feature_dims))
    user = NodeType(
        original_ids=1000 + 7 * np.arange(users, dtype=np.int64),
        id_type=ID_INT64,
        feat=user_feat.astype(np.float32),
        label=label,
    )
    hetero_split(user, train_fraction, val_fraction, seed + 1)
    device = NodeType(
        original_ids=np.array([f"dev-{j}" for j in range(devices)], dtype="S"),
        id_type=ID_STRING,
    )
    merchant = NodeType(
        original_ids=50 + np.arange(merchants, dtype=np.int64),
        id_type=ID_INT64,
        feat=rng.normal(size=(merchants, 4)).astype(np.float32),
    )
    return HeteroGraphData(
        nodes={"user": user, "device": device, "merchant": merchant},
        edges={
            ("user", "uses", "device"): uses,
            ("device", "used_by", "user"): (uses[1], uses[0]),
            ("user", "pays", "merchant"): pays,
            ("merchant", "paid_by", "user"): (pays[1], pays[0]),
        },
    )

"""Node embeddings into a data-service feature group, so the data service serves them online
by original node id (GetFeatures), next to every other feature.

The graph service reaches the data service only through its gRPC client: nothing is shared
but the contract. The group has entity key ``node_id`` (the graph's id type), event time
``event_time`` and one FLOAT32_VECTOR feature ``embedding``; an existing group with other
features gets a new version, so readers of the old one are not broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np

from atlas.data.v1 import data_service_pb2 as dpb
from atlas_core.errors import AlreadyExists, NotFound
from atlas_core.rpc import ClientSettings

FEATURE_GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ENTITY_KEY = "node_id"
EVENT_TIME = "event_time"
FEATURE = "embedding"


def group_spec(name: str, string_ids: bool, dims: int, description: str) -> dpb.FeatureGroupSpec:
    return dpb.FeatureGroupSpec(
        name=name,
        entity_key=ENTITY_KEY,
        entity_key_type=dpb.ENTITY_KEY_TYPE_STRING if string_ids else dpb.ENTITY_KEY_TYPE_INT64,
        event_time_column=EVENT_TIME,
        features=[dpb.FeatureSpec(name=FEATURE, dtype=dpb.FEATURE_TYPE_FLOAT32_VECTOR, dims=dims)],
        description=description,
    )


def write_embedding_features(
    settings: ClientSettings,
    name: str,
    node_ids: np.ndarray,
    embeddings: np.ndarray,
    *,
    event_time: datetime,
    description: str,
    request_id: str,
) -> dict[str, Any]:
    """Write one record per node (original ids: int64, or UTF-8 bytes for string graphs);
    returns the group's ``{"name", "version"}``. Raises the data service's errors."""
    from atlas_core.clients.data import DataClient

    string_ids = node_ids.dtype.kind == "S"
    spec = group_spec(name, string_ids, embeddings.shape[1], description)
    with DataClient(settings, timeout=600) as client:
        version = _version_for(client, spec)
        client.put_records(name, _records(node_ids, embeddings, event_time), request_id=request_id)
    return {"name": name, "version": version}


def _version_for(client: Any, spec: dpb.FeatureGroupSpec) -> int:
    """The version of the group whose schema is ``spec``'s, created when needed."""
    attempts = 3  # another writer may create it between our read and our write
    while True:
        attempts -= 1
        try:
            current = client.get_feature_group(spec.name)
        except NotFound:
            current = None
        if current is not None and _same_schema(current.spec, spec):
            return int(current.version)
        try:
            return int(client.create_feature_group(spec, new_version=current is not None).version)
        except AlreadyExists:
            if not attempts:
                raise


def _same_schema(current: dpb.FeatureGroupSpec, wanted: dpb.FeatureGroupSpec) -> bool:
    return (
        current.entity_key == wanted.entity_key
        and current.entity_key_type == wanted.entity_key_type
        and current.event_time_column == wanted.event_time_column
        and [(f.name, f.dtype, f.dims) for f in current.features]
        == [(f.name, f.dtype, f.dims) for f in wanted.features]
    )


def _records(
    node_ids: np.ndarray, embeddings: np.ndarray, event_time: datetime
) -> Iterator[dpb.FeatureRecord]:
    when = dpb.FeatureRecord().event_time
    when.FromDatetime(event_time)
    values = np.ascontiguousarray(embeddings, dtype="<f4")
    for node, vector in zip(node_ids.tolist(), values, strict=True):
        key = (
            dpb.EntityKey(string_key=node.decode())
            if isinstance(node, bytes)
            else dpb.EntityKey(int64_key=node)
        )
        yield dpb.FeatureRecord(entity_key=key, event_time=when, float32_values=vector.tobytes())

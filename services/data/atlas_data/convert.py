"""Proto <-> domain conversions for the data service: the only module that knows both."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from google.protobuf import duration_pb2, timestamp_pb2

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_data.feature_groups import FeatureGroup
from atlas_data.records import RawRecord
from atlas_data.schema import (
    EntityKeyType,
    FeatureGroupSpec,
    FeatureSpec,
    FeatureType,
    RecordLayout,
    ValueBlock,
)

_KEY_TYPES = {
    pb.ENTITY_KEY_TYPE_INT64: EntityKeyType.INT64,
    pb.ENTITY_KEY_TYPE_STRING: EntityKeyType.STRING,
}
_KEY_TYPES_PB = {v: k for k, v in _KEY_TYPES.items()}
_FEATURE_TYPES = {
    pb.FEATURE_TYPE_FLOAT32: FeatureType.FLOAT32,
    pb.FEATURE_TYPE_FLOAT32_VECTOR: FeatureType.FLOAT32_VECTOR,
    pb.FEATURE_TYPE_FLOAT64: FeatureType.FLOAT64,
    pb.FEATURE_TYPE_INT64: FeatureType.INT64,
    pb.FEATURE_TYPE_STRING: FeatureType.STRING,
    pb.FEATURE_TYPE_CATEGORICAL: FeatureType.CATEGORICAL,
    pb.FEATURE_TYPE_BOOL: FeatureType.BOOL,
}
_FEATURE_TYPES_PB = {v: k for k, v in _FEATURE_TYPES.items()}
_BLOCKS_PB = {
    ValueBlock.FLOAT32: pb.VALUE_BLOCK_FLOAT32,
    ValueBlock.FLOAT64: pb.VALUE_BLOCK_FLOAT64,
    ValueBlock.INT64: pb.VALUE_BLOCK_INT64,
    ValueBlock.STRING: pb.VALUE_BLOCK_STRING,
}


# -- time ------------------------------------------------------------------------------------

def ts_to_us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def us_to_ts(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    seconds, micros = divmod(int(us), 1_000_000)
    ts.seconds, ts.nanos = seconds, micros * 1000
    return ts


def dt_to_ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(timezone.utc))
    return ts


def opt_ts_us(message: object, field: str) -> int | None:
    return ts_to_us(getattr(message, field)) if message.HasField(field) else None  # type: ignore[attr-defined]


# -- feature groups --------------------------------------------------------------------------

def spec_from_pb(msg: pb.FeatureGroupSpec) -> FeatureGroupSpec:
    if msg.entity_key_type not in _KEY_TYPES:
        raise InvalidArgument("spec.entity_key_type must be INT64 or STRING",
                              reason="INVALID_SPEC")
    features = []
    for i, f in enumerate(msg.features):
        if f.dtype not in _FEATURE_TYPES:
            raise InvalidArgument(f"spec.features[{i}] ('{f.name}'): dtype is unspecified",
                                  reason="INVALID_SPEC")
        features.append(FeatureSpec(f.name, _FEATURE_TYPES[f.dtype], f.dims,
                                    tuple(f.categories), f.description))
    ttl = msg.ttl.ToTimedelta().total_seconds() if msg.HasField("ttl") else None
    return FeatureGroupSpec(
        name=msg.name, entity_key=msg.entity_key, entity_key_type=_KEY_TYPES[msg.entity_key_type],
        event_time_column=msg.event_time_column, features=tuple(features), ttl_seconds=ttl,
        description=msg.description, labels=dict(msg.labels),
    )


def spec_to_pb(spec: FeatureGroupSpec) -> pb.FeatureGroupSpec:
    msg = pb.FeatureGroupSpec(
        name=spec.name, entity_key=spec.entity_key,
        entity_key_type=_KEY_TYPES_PB[spec.entity_key_type],
        event_time_column=spec.event_time_column, description=spec.description,
        labels=dict(spec.labels),
        features=[pb.FeatureSpec(name=f.name, dtype=_FEATURE_TYPES_PB[f.dtype], dims=f.dims,
                                 categories=list(f.categories), description=f.description)
                  for f in spec.features],
    )
    if spec.ttl_seconds is not None:
        msg.ttl.CopyFrom(duration_pb2.Duration(seconds=int(spec.ttl_seconds),
                                               nanos=int(spec.ttl_seconds % 1 * 1e9)))
    return msg


def layout_to_pb(layout: RecordLayout) -> pb.RecordLayout:
    return pb.RecordLayout(
        slots=[pb.FeatureSlot(name=s.name, dtype=_FEATURE_TYPES_PB[s.dtype], dims=s.dims,
                              block=_BLOCKS_PB[s.block], offset=s.offset)
               for s in layout.slots],
        float32_width=layout.float32_width, float64_width=layout.float64_width,
        int64_width=layout.int64_width, string_width=layout.string_width,
    )


def group_to_pb(group: FeatureGroup, stats: pb.FeatureGroupStats | None = None
                ) -> pb.FeatureGroup:
    msg = pb.FeatureGroup(spec=spec_to_pb(group.spec), version=group.version,
                          layout=layout_to_pb(group.layout),
                          create_time=dt_to_ts(group.created_at))
    if stats is not None:
        msg.stats.CopyFrom(stats)
    return msg


# -- records ---------------------------------------------------------------------------------

def raw_records(records: Iterable[pb.FeatureRecord]) -> list[RawRecord]:
    out = []
    for r in records:
        which = r.entity_key.WhichOneof("key")
        key = None if which is None else getattr(r.entity_key, which)
        out.append(RawRecord(
            entity_key=key,
            event_time_us=ts_to_us(r.event_time) if r.HasField("event_time") else None,
            float32_bytes=r.float32_values, float64=r.float64_values, int64=r.int64_values,
            strings=r.string_values, null_mask=r.null_mask,
        ))
    return out


def entity_keys(msg: pb.EntityKeys) -> list[int] | list[str]:
    if msg.int64_keys and msg.string_keys:
        raise InvalidArgument("entity_keys: set int64_keys or string_keys, not both",
                              reason="INVALID_KEYS")
    return list(msg.int64_keys) if msg.int64_keys else list(msg.string_keys)


def group_ref(msg: common_pb2.FeatureGroupRef, field: str = "feature_group") -> tuple[str, int]:
    if not msg.name:
        raise InvalidArgument(f"{field}.name is empty", reason="EMPTY_NAME")
    return msg.name, int(msg.version)

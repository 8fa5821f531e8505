from atlas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntityKeyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTITY_KEY_TYPE_UNSPECIFIED: _ClassVar[EntityKeyType]
    ENTITY_KEY_TYPE_INT64: _ClassVar[EntityKeyType]
    ENTITY_KEY_TYPE_STRING: _ClassVar[EntityKeyType]

class FeatureType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_TYPE_UNSPECIFIED: _ClassVar[FeatureType]
    FEATURE_TYPE_FLOAT32: _ClassVar[FeatureType]
    FEATURE_TYPE_FLOAT32_VECTOR: _ClassVar[FeatureType]
    FEATURE_TYPE_FLOAT64: _ClassVar[FeatureType]
    FEATURE_TYPE_INT64: _ClassVar[FeatureType]
    FEATURE_TYPE_STRING: _ClassVar[FeatureType]
    FEATURE_TYPE_CATEGORICAL: _ClassVar[FeatureType]
    FEATURE_TYPE_BOOL: _ClassVar[FeatureType]

class ValueBlock(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_BLOCK_UNSPECIFIED: _ClassVar[ValueBlock]
    VALUE_BLOCK_FLOAT32: _ClassVar[ValueBlock]
    VALUE_BLOCK_FLOAT64: _ClassVar[ValueBlock]
    VALUE_BLOCK_INT64: _ClassVar[ValueBlock]
    VALUE_BLOCK_STRING: _ClassVar[ValueBlock]

class MatchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_MODE_UNSPECIFIED: _ClassVar[MatchMode]
    MATCH_MODE_AS_OF: _ClassVar[MatchMode]
    MATCH_MODE_AS_KNOWN_AT: _ClassVar[MatchMode]

class SpineSampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPINE_SAMPLING_UNSPECIFIED: _ClassVar[SpineSampling]
    SPINE_SAMPLING_EVERY_RECORD: _ClassVar[SpineSampling]
    SPINE_SAMPLING_LATEST_PER_ENTITY: _ClassVar[SpineSampling]
    SPINE_SAMPLING_FIXED_INTERVAL: _ClassVar[SpineSampling]

class SampleMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_METHOD_UNSPECIFIED: _ClassVar[SampleMethod]
    SAMPLE_METHOD_RANDOM: _ClassVar[SampleMethod]
    SAMPLE_METHOD_STRATIFIED: _ClassVar[SampleMethod]

class DataJobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_JOB_KIND_UNSPECIFIED: _ClassVar[DataJobKind]
    DATA_JOB_KIND_INGEST: _ClassVar[DataJobKind]
    DATA_JOB_KIND_COMPACTION: _ClassVar[DataJobKind]
    DATA_JOB_KIND_MATCH_SAMPLES: _ClassVar[DataJobKind]
    DATA_JOB_KIND_DERIVE_DATASET: _ClassVar[DataJobKind]
ENTITY_KEY_TYPE_UNSPECIFIED: EntityKeyType
ENTITY_KEY_TYPE_INT64: EntityKeyType
ENTITY_KEY_TYPE_STRING: EntityKeyType
FEATURE_TYPE_UNSPECIFIED: FeatureType
FEATURE_TYPE_FLOAT32: FeatureType
FEATURE_TYPE_FLOAT32_VECTOR: FeatureType
FEATURE_TYPE_FLOAT64: FeatureType
FEATURE_TYPE_INT64: FeatureType
FEATURE_TYPE_STRING: FeatureType
FEATURE_TYPE_CATEGORICAL: FeatureType
FEATURE_TYPE_BOOL: FeatureType
VALUE_BLOCK_UNSPECIFIED: ValueBlock
VALUE_BLOCK_FLOAT32: ValueBlock
VALUE_BLOCK_FLOAT64: ValueBlock
VALUE_BLOCK_INT64: ValueBlock
VALUE_BLOCK_STRING: ValueBlock
MATCH_MODE_UNSPECIFIED: MatchMode
MATCH_MODE_AS_OF: MatchMode
MATCH_MODE_AS_KNOWN_AT: MatchMode
SPINE_SAMPLING_UNSPECIFIED: SpineSampling
SPINE_SAMPLING_EVERY_RECORD: SpineSampling
SPINE_SAMPLING_LATEST_PER_ENTITY: SpineSampling
SPINE_SAMPLING_FIXED_INTERVAL: SpineSampling
SAMPLE_METHOD_UNSPECIFIED: SampleMethod
SAMPLE_METHOD_RANDOM: SampleMethod
SAMPLE_METHOD_STRATIFIED: SampleMethod
DATA_JOB_KIND_UNSPECIFIED: DataJobKind
DATA_JOB_KIND_INGEST: DataJobKind
DATA_JOB_KIND_COMPACTION: DataJobKind
DATA_JOB_KIND_MATCH_SAMPLES: DataJobKind
DATA_JOB_KIND_DERIVE_DATASET: DataJobKind

class FeatureSpec(_message.Message):
    __slots__ = ("name", "dtype", "dims", "categories", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: FeatureType
    dims: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[FeatureType, str]] = ..., dims: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class FeatureGroupSpec(_message.Message):
    __slots__ = ("name", "entity_key", "entity_key_type", "event_time_column", "features", "ttl", "description", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    entity_key: str
    entity_key_type: EntityKeyType
    event_time_column: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    ttl: _duration_pb2.Duration
    description: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., entity_key: _Optional[str] = ..., entity_key_type: _Optional[_Union[EntityKeyType, str]] = ..., event_time_column: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FeatureSlot(_message.Message):
    __slots__ = ("name", "dtype", "dims", "block", "offset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: FeatureType
    dims: int
    block: ValueBlock
    offset: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[FeatureType, str]] = ..., dims: _Optional[int] = ..., block: _Optional[_Union[ValueBlock, str]] = ..., offset: _Optional[int] = ...) -> None: ...

class RecordLayout(_message.Message):
    __slots__ = ("slots", "float32_width", "float64_width", "int64_width", "string_width")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INT64_WIDTH_FIELD_NUMBER: _ClassVar[int]
    STRING_WIDTH_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedCompositeFieldContainer[FeatureSlot]
    float32_width: int
    float64_width: int
    int64_width: int
    string_width: int
    def __init__(self, slots: _Optional[_Iterable[_Union[FeatureSlot, _Mapping]]] = ..., float32_width: _Optional[int] = ..., float64_width: _Optional[int] = ..., int64_width: _Optional[int] = ..., string_width: _Optional[int] = ...) -> None: ...

class FeatureGroupStats(_message.Message):
    __slots__ = ("online_entities", "offline_rows", "offline_partitions", "max_event_time", "last_ingest_time")
    ONLINE_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_ROWS_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_INGEST_TIME_FIELD_NUMBER: _ClassVar[int]
    online_entities: int
    offline_rows: int
    offline_partitions: int
    max_event_time: _timestamp_pb2.Timestamp
    last_ingest_time: _timestamp_pb2.Timestamp
    def __init__(self, online_entities: _Optional[int] = ..., offline_rows: _Optional[int] = ..., offline_partitions: _Optional[int] = ..., max_event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_ingest_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeatureGroup(_message.Message):
    __slots__ = ("spec", "version", "layout", "create_time", "stats")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    spec: FeatureGroupSpec
    version: int
    layout: RecordLayout
    create_time: _timestamp_pb2.Timestamp
    stats: FeatureGroupStats
    def __init__(self, spec: _Optional[_Union[FeatureGroupSpec, _Mapping]] = ..., version: _Optional[int] = ..., layout: _Optional[_Union[RecordLayout, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., stats: _Optional[_Union[FeatureGroupStats, _Mapping]] = ...) -> None: ...

class EntityKey(_message.Message):
    __slots__ = ("int64_key", "string_key")
    INT64_KEY_FIELD_NUMBER: _ClassVar[int]
    STRING_KEY_FIELD_NUMBER: _ClassVar[int]
    int64_key: int
    string_key: str
    def __init__(self, int64_key: _Optional[int] = ..., string_key: _Optional[str] = ...) -> None: ...

class EntityKeys(_message.Message):
    __slots__ = ("int64_keys", "string_keys")
    INT64_KEYS_FIELD_NUMBER: _ClassVar[int]
    STRING_KEYS_FIELD_NUMBER: _ClassVar[int]
    int64_keys: _containers.RepeatedScalarFieldContainer[int]
    string_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, int64_keys: _Optional[_Iterable[int]] = ..., string_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureRecord(_message.Message):
    __slots__ = ("entity_key", "event_time", "float32_values", "float64_values", "int64_values", "string_values", "null_mask")
    ENTITY_KEY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    NULL_MASK_FIELD_NUMBER: _ClassVar[int]
    entity_key: EntityKey
    event_time: _timestamp_pb2.Timestamp
    float32_values: bytes
    float64_values: _containers.RepeatedScalarFieldContainer[float]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    null_mask: bytes
    def __init__(self, entity_key: _Optional[_Union[EntityKey, _Mapping]] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., float32_values: _Optional[bytes] = ..., float64_values: _Optional[_Iterable[float]] = ..., int64_values: _Optional[_Iterable[int]] = ..., string_values: _Optional[_Iterable[str]] = ..., null_mask: _Optional[bytes] = ...) -> None: ...

class CreateFeatureGroupRequest(_message.Message):
    __slots__ = ("spec", "new_version", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: FeatureGroupSpec
    new_version: bool
    request_id: str
    def __init__(self, spec: _Optional[_Union[FeatureGroupSpec, _Mapping]] = ..., new_version: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateFeatureGroupResponse(_message.Message):
    __slots__ = ("feature_group",)
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    feature_group: FeatureGroup
    def __init__(self, feature_group: _Optional[_Union[FeatureGroup, _Mapping]] = ...) -> None: ...

class GetFeatureGroupRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.FeatureGroupRef
    def __init__(self, ref: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ...) -> None: ...

class GetFeatureGroupResponse(_message.Message):
    __slots__ = ("feature_group",)
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    feature_group: FeatureGroup
    def __init__(self, feature_group: _Optional[_Union[FeatureGroup, _Mapping]] = ...) -> None: ...

class ListFeatureGroupsRequest(_message.Message):
    __slots__ = ("page", "name_prefix", "all_versions", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ALL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    name_prefix: str
    all_versions: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., name_prefix: _Optional[str] = ..., all_versions: bool = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListFeatureGroupsResponse(_message.Message):
    __slots__ = ("feature_groups", "page")
    FEATURE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    feature_groups: _containers.RepeatedCompositeFieldContainer[FeatureGroup]
    page: _common_pb2.PageResponse
    def __init__(self, feature_groups: _Optional[_Iterable[_Union[FeatureGroup, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DeleteFeatureGroupRequest(_message.Message):
    __slots__ = ("name", "keep_offline", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEEP_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    keep_offline: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., keep_offline: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteFeatureGroupResponse(_message.Message):
    __slots__ = ("deleted_versions",)
    DELETED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    deleted_versions: int
    def __init__(self, deleted_versions: _Optional[int] = ...) -> None: ...

class PutRecordsRequest(_message.Message):
    __slots__ = ("feature_group", "request_id", "records")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    request_id: str
    records: _containers.RepeatedCompositeFieldContainer[FeatureRecord]
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., request_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[FeatureRecord, _Mapping]]] = ...) -> None: ...

class PutRecordsResponse(_message.Message):
    __slots__ = ("records_written", "records_stale", "feature_group_version")
    RECORDS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_STALE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    records_written: int
    records_stale: int
    feature_group_version: int
    def __init__(self, records_written: _Optional[int] = ..., records_stale: _Optional[int] = ..., feature_group_version: _Optional[int] = ...) -> None: ...

class WriteRecordsRequest(_message.Message):
    __slots__ = ("feature_group", "request_id", "sequence", "records")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    request_id: str
    sequence: int
    records: _containers.RepeatedCompositeFieldContainer[FeatureRecord]
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., request_id: _Optional[str] = ..., sequence: _Optional[int] = ..., records: _Optional[_Iterable[_Union[FeatureRecord, _Mapping]]] = ...) -> None: ...

class WriteRecordsResponse(_message.Message):
    __slots__ = ("sequence", "records_written", "records_stale")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_STALE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    records_written: int
    records_stale: int
    def __init__(self, sequence: _Optional[int] = ..., records_written: _Optional[int] = ..., records_stale: _Optional[int] = ...) -> None: ...

class ParquetSource(_message.Message):
    __slots__ = ("artifacts", "uri_prefix", "column_mapping")
    class ColumnMappingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    URI_PREFIX_FIELD_NUMBER: _ClassVar[int]
    COLUMN_MAPPING_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    uri_prefix: str
    column_mapping: _containers.ScalarMap[str, str]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., uri_prefix: _Optional[str] = ..., column_mapping: _Optional[_Mapping[str, str]] = ...) -> None: ...

class IngestSpec(_message.Message):
    __slots__ = ("feature_group", "source", "skip_online")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SKIP_ONLINE_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    source: ParquetSource
    skip_online: bool
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., source: _Optional[_Union[ParquetSource, _Mapping]] = ..., skip_online: bool = ...) -> None: ...

class SubmitIngestJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: IngestSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[IngestSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitIngestJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class GetFeaturesRequest(_message.Message):
    __slots__ = ("feature_group", "entity_keys", "feature_names", "include_ingestion_times")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KEYS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INGESTION_TIMES_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    entity_keys: EntityKeys
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    include_ingestion_times: bool
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., entity_keys: _Optional[_Union[EntityKeys, _Mapping]] = ..., feature_names: _Optional[_Iterable[str]] = ..., include_ingestion_times: bool = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ("layout", "found", "event_time_micros", "ingestion_time_micros", "float32_values", "float64_values", "int64_values", "string_values", "null_masks", "feature_group_version")
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    INGESTION_TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    NULL_MASKS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    layout: RecordLayout
    found: _containers.RepeatedScalarFieldContainer[bool]
    event_time_micros: _containers.RepeatedScalarFieldContainer[int]
    ingestion_time_micros: _containers.RepeatedScalarFieldContainer[int]
    float32_values: bytes
    float64_values: _containers.RepeatedScalarFieldContainer[float]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    null_masks: _containers.RepeatedScalarFieldContainer[bytes]
    feature_group_version: int
    def __init__(self, layout: _Optional[_Union[RecordLayout, _Mapping]] = ..., found: _Optional[_Iterable[bool]] = ..., event_time_micros: _Optional[_Iterable[int]] = ..., ingestion_time_micros: _Optional[_Iterable[int]] = ..., float32_values: _Optional[bytes] = ..., float64_values: _Optional[_Iterable[float]] = ..., int64_values: _Optional[_Iterable[int]] = ..., string_values: _Optional[_Iterable[str]] = ..., null_masks: _Optional[_Iterable[bytes]] = ..., feature_group_version: _Optional[int] = ...) -> None: ...

class OfflinePartition(_message.Message):
    __slots__ = ("artifact", "row_count", "min_event_time", "max_event_time", "compacted", "feature_group_version")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_FIELD_NUMBER: _ClassVar[int]
    FEATURE_GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    artifact: _common_pb2.ArtifactRef
    row_count: int
    min_event_time: _timestamp_pb2.Timestamp
    max_event_time: _timestamp_pb2.Timestamp
    compacted: bool
    feature_group_version: int
    def __init__(self, artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., row_count: _Optional[int] = ..., min_event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., max_event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., compacted: bool = ..., feature_group_version: _Optional[int] = ...) -> None: ...

class ListOfflinePartitionsRequest(_message.Message):
    __slots__ = ("feature_group", "start_time", "end_time", "page")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page: _common_pb2.PageRequest
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListOfflinePartitionsResponse(_message.Message):
    __slots__ = ("partitions", "page")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[OfflinePartition]
    page: _common_pb2.PageResponse
    def __init__(self, partitions: _Optional[_Iterable[_Union[OfflinePartition, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class CompactionSpec(_message.Message):
    __slots__ = ("feature_group", "start_time", "end_time", "target_partition_bytes", "deduplicate")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TARGET_PARTITION_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATE_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    target_partition_bytes: int
    deduplicate: bool
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., target_partition_bytes: _Optional[int] = ..., deduplicate: bool = ...) -> None: ...

class SubmitCompactionJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: CompactionSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[CompactionSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitCompactionJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class CompactionResult(_message.Message):
    __slots__ = ("input_partitions", "output_partitions", "rows", "duplicates_dropped")
    INPUT_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    input_partitions: int
    output_partitions: int
    rows: int
    duplicates_dropped: int
    def __init__(self, input_partitions: _Optional[int] = ..., output_partitions: _Optional[int] = ..., rows: _Optional[int] = ..., duplicates_dropped: _Optional[int] = ...) -> None: ...

class FeatureSelection(_message.Message):
    __slots__ = ("feature_group", "feature_names", "column_prefix", "ttl")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    COLUMN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    column_prefix: str
    ttl: _duration_pb2.Duration
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., feature_names: _Optional[_Iterable[str]] = ..., column_prefix: _Optional[str] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SampleSource(_message.Message):
    __slots__ = ("artifact", "dataset", "entity_column", "timestamp_column", "label_column", "passthrough_columns")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    artifact: _common_pb2.ArtifactRef
    dataset: _common_pb2.DatasetRef
    entity_column: str
    timestamp_column: str
    label_column: str
    passthrough_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., entity_column: _Optional[str] = ..., timestamp_column: _Optional[str] = ..., label_column: _Optional[str] = ..., passthrough_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class SpineFreeSource(_message.Message):
    __slots__ = ("feature_group", "start_time", "end_time", "sampling", "interval", "label_feature", "max_samples", "seed")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FEATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    feature_group: _common_pb2.FeatureGroupRef
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    sampling: SpineSampling
    interval: _duration_pb2.Duration
    label_feature: str
    max_samples: int
    seed: int
    def __init__(self, feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., sampling: _Optional[_Union[SpineSampling, str]] = ..., interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., label_feature: _Optional[str] = ..., max_samples: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class MatchSamplesSpec(_message.Message):
    __slots__ = ("sample_source", "spine_free", "features", "mode", "output_dataset_name", "drop_unmatched", "skip_meta_features", "description")
    SAMPLE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPINE_FREE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    DROP_UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    SKIP_META_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    sample_source: SampleSource
    spine_free: SpineFreeSource
    features: _containers.RepeatedCompositeFieldContainer[FeatureSelection]
    mode: MatchMode
    output_dataset_name: str
    drop_unmatched: bool
    skip_meta_features: bool
    description: str
    def __init__(self, sample_source: _Optional[_Union[SampleSource, _Mapping]] = ..., spine_free: _Optional[_Union[SpineFreeSource, _Mapping]] = ..., features: _Optional[_Iterable[_Union[FeatureSelection, _Mapping]]] = ..., mode: _Optional[_Union[MatchMode, str]] = ..., output_dataset_name: _Optional[str] = ..., drop_unmatched: bool = ..., skip_meta_features: bool = ..., description: _Optional[str] = ...) -> None: ...

class SubmitMatchSamplesJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: MatchSamplesSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[MatchSamplesSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitMatchSamplesJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class LabelCount(_message.Message):
    __slots__ = ("label", "count")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    label: str
    count: int
    def __init__(self, label: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class LabelDistribution(_message.Message):
    __slots__ = ("label_column", "counts", "mean", "stddev", "min", "max", "missing")
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    label_column: str
    counts: _containers.RepeatedCompositeFieldContainer[LabelCount]
    mean: float
    stddev: float
    min: float
    max: float
    missing: int
    def __init__(self, label_column: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ..., mean: _Optional[float] = ..., stddev: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., missing: _Optional[int] = ...) -> None: ...

class Landmarker(_message.Message):
    __slots__ = ("name", "metric", "score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    metric: str
    score: float
    def __init__(self, name: _Optional[str] = ..., metric: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class MetaFeatures(_message.Message):
    __slots__ = ("rows", "columns", "numeric_columns", "categorical_columns", "missing_ratio", "classes", "class_entropy", "class_imbalance_ratio", "skew_mean", "skew_min", "skew_max", "skew_std", "kurtosis_mean", "kurtosis_min", "kurtosis_max", "kurtosis_std", "log_rows_per_column", "landmarkers", "target_column", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MISSING_RATIO_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_ENTROPY_FIELD_NUMBER: _ClassVar[int]
    CLASS_IMBALANCE_RATIO_FIELD_NUMBER: _ClassVar[int]
    SKEW_MEAN_FIELD_NUMBER: _ClassVar[int]
    SKEW_MIN_FIELD_NUMBER: _ClassVar[int]
    SKEW_MAX_FIELD_NUMBER: _ClassVar[int]
    SKEW_STD_FIELD_NUMBER: _ClassVar[int]
    KURTOSIS_MEAN_FIELD_NUMBER: _ClassVar[int]
    KURTOSIS_MIN_FIELD_NUMBER: _ClassVar[int]
    KURTOSIS_MAX_FIELD_NUMBER: _ClassVar[int]
    KURTOSIS_STD_FIELD_NUMBER: _ClassVar[int]
    LOG_ROWS_PER_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LANDMARKERS_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    rows: int
    columns: int
    numeric_columns: int
    categorical_columns: int
    missing_ratio: float
    classes: int
    class_entropy: float
    class_imbalance_ratio: float
    skew_mean: float
    skew_min: float
    skew_max: float
    skew_std: float
    kurtosis_mean: float
    kurtosis_min: float
    kurtosis_max: float
    kurtosis_std: float
    log_rows_per_column: float
    landmarkers: _containers.RepeatedCompositeFieldContainer[Landmarker]
    target_column: str
    extra: _containers.ScalarMap[str, float]
    def __init__(self, rows: _Optional[int] = ..., columns: _Optional[int] = ..., numeric_columns: _Optional[int] = ..., categorical_columns: _Optional[int] = ..., missing_ratio: _Optional[float] = ..., classes: _Optional[int] = ..., class_entropy: _Optional[float] = ..., class_imbalance_ratio: _Optional[float] = ..., skew_mean: _Optional[float] = ..., skew_min: _Optional[float] = ..., skew_max: _Optional[float] = ..., skew_std: _Optional[float] = ..., kurtosis_mean: _Optional[float] = ..., kurtosis_min: _Optional[float] = ..., kurtosis_max: _Optional[float] = ..., kurtosis_std: _Optional[float] = ..., log_rows_per_column: _Optional[float] = ..., landmarkers: _Optional[_Iterable[_Union[Landmarker, _Mapping]]] = ..., target_column: _Optional[str] = ..., extra: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("ref", "name", "artifacts", "schema", "row_count", "label_distribution", "lineage", "meta_features", "entity_column", "timestamp_column", "label_column", "create_time", "description", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    LABEL_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    META_FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.DatasetRef
    name: str
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    schema: _common_pb2.TableSchema
    row_count: int
    label_distribution: LabelDistribution
    lineage: _common_pb2.Lineage
    meta_features: MetaFeatures
    entity_column: str
    timestamp_column: str
    label_column: str
    create_time: _timestamp_pb2.Timestamp
    description: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., name: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., schema: _Optional[_Union[_common_pb2.TableSchema, _Mapping]] = ..., row_count: _Optional[int] = ..., label_distribution: _Optional[_Union[LabelDistribution, _Mapping]] = ..., lineage: _Optional[_Union[_common_pb2.Lineage, _Mapping]] = ..., meta_features: _Optional[_Union[MetaFeatures, _Mapping]] = ..., entity_column: _Optional[str] = ..., timestamp_column: _Optional[str] = ..., label_column: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterDatasetRequest(_message.Message):
    __slots__ = ("name", "artifacts", "entity_column", "timestamp_column", "label_column", "parents", "description", "labels", "request_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    entity_column: str
    timestamp_column: str
    label_column: str
    parents: _containers.RepeatedCompositeFieldContainer[_common_pb2.LineageParent]
    description: str
    labels: _containers.ScalarMap[str, str]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., entity_column: _Optional[str] = ..., timestamp_column: _Optional[str] = ..., label_column: _Optional[str] = ..., parents: _Optional[_Iterable[_Union[_common_pb2.LineageParent, _Mapping]]] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RegisterDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.DatasetRef
    def __init__(self, ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("page", "dataset_id", "name_prefix", "parent", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    dataset_id: str
    name_prefix: str
    parent: _common_pb2.DatasetRef
    labels: _containers.ScalarMap[str, str]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., dataset_id: _Optional[str] = ..., name_prefix: _Optional[str] = ..., parent: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "page")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    page: _common_pb2.PageResponse
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.DatasetRef
    request_id: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("deleted_versions",)
    DELETED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    deleted_versions: int
    def __init__(self, deleted_versions: _Optional[int] = ...) -> None: ...

class GetDatasetMetaFeaturesRequest(_message.Message):
    __slots__ = ("ref", "target_column")
    REF_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.DatasetRef
    target_column: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., target_column: _Optional[str] = ...) -> None: ...

class GetDatasetMetaFeaturesResponse(_message.Message):
    __slots__ = ("meta_features", "ref")
    META_FEATURES_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    meta_features: MetaFeatures
    ref: _common_pb2.DatasetRef
    def __init__(self, meta_features: _Optional[_Union[MetaFeatures, _Mapping]] = ..., ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class MergeOp(_message.Message):
    __slots__ = ("inputs", "deduplicate")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATE_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    deduplicate: bool
    def __init__(self, inputs: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., deduplicate: bool = ...) -> None: ...

class SampleOp(_message.Message):
    __slots__ = ("input", "method", "fraction", "rows", "stratify_column", "seed")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STRATIFY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    input: _common_pb2.DatasetRef
    method: SampleMethod
    fraction: float
    rows: int
    stratify_column: str
    seed: int
    def __init__(self, input: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., method: _Optional[_Union[SampleMethod, str]] = ..., fraction: _Optional[float] = ..., rows: _Optional[int] = ..., stratify_column: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class FilterOp(_message.Message):
    __slots__ = ("input", "expression")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    input: _common_pb2.DatasetRef
    expression: str
    def __init__(self, input: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., expression: _Optional[str] = ...) -> None: ...

class SplitOp(_message.Message):
    __slots__ = ("input", "train_fraction", "valid_fraction", "test_fraction", "stratify_column", "group_column", "time_column", "seed")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FRACTION_FIELD_NUMBER: _ClassVar[int]
    VALID_FRACTION_FIELD_NUMBER: _ClassVar[int]
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    STRATIFY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    GROUP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    input: _common_pb2.DatasetRef
    train_fraction: float
    valid_fraction: float
    test_fraction: float
    stratify_column: str
    group_column: str
    time_column: str
    seed: int
    def __init__(self, input: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., train_fraction: _Optional[float] = ..., valid_fraction: _Optional[float] = ..., test_fraction: _Optional[float] = ..., stratify_column: _Optional[str] = ..., group_column: _Optional[str] = ..., time_column: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class ProjectOp(_message.Message):
    __slots__ = ("input", "columns", "drop_columns")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    DROP_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    input: _common_pb2.DatasetRef
    columns: _containers.RepeatedScalarFieldContainer[str]
    drop_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, input: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., columns: _Optional[_Iterable[str]] = ..., drop_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class DeriveDatasetSpec(_message.Message):
    __slots__ = ("merge", "sample", "filter", "split", "project", "output_dataset_name", "skip_meta_features", "description")
    MERGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    SKIP_META_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    merge: MergeOp
    sample: SampleOp
    filter: FilterOp
    split: SplitOp
    project: ProjectOp
    output_dataset_name: str
    skip_meta_features: bool
    description: str
    def __init__(self, merge: _Optional[_Union[MergeOp, _Mapping]] = ..., sample: _Optional[_Union[SampleOp, _Mapping]] = ..., filter: _Optional[_Union[FilterOp, _Mapping]] = ..., split: _Optional[_Union[SplitOp, _Mapping]] = ..., project: _Optional[_Union[ProjectOp, _Mapping]] = ..., output_dataset_name: _Optional[str] = ..., skip_meta_features: bool = ..., description: _Optional[str] = ...) -> None: ...

class SubmitDeriveDatasetJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: DeriveDatasetSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[DeriveDatasetSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitDeriveDatasetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("rows_read", "records_written", "records_stale", "files_done")
    ROWS_READ_FIELD_NUMBER: _ClassVar[int]
    RECORDS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_STALE_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    rows_read: int
    records_written: int
    records_stale: int
    files_done: int
    def __init__(self, rows_read: _Optional[int] = ..., records_written: _Optional[int] = ..., records_stale: _Optional[int] = ..., files_done: _Optional[int] = ...) -> None: ...

class DatasetResult(_message.Message):
    __slots__ = ("datasets", "unmatched_samples", "warnings")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    unmatched_samples: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ..., unmatched_samples: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class DataJob(_message.Message):
    __slots__ = ("status", "kind", "ingest", "compaction", "match_samples", "derive_dataset", "ingest_result", "compaction_result", "dataset_result")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INGEST_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FIELD_NUMBER: _ClassVar[int]
    MATCH_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DERIVE_DATASET_FIELD_NUMBER: _ClassVar[int]
    INGEST_RESULT_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_RESULT_FIELD_NUMBER: _ClassVar[int]
    DATASET_RESULT_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    kind: DataJobKind
    ingest: IngestSpec
    compaction: CompactionSpec
    match_samples: MatchSamplesSpec
    derive_dataset: DeriveDatasetSpec
    ingest_result: IngestResult
    compaction_result: CompactionResult
    dataset_result: DatasetResult
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, _Mapping]] = ..., kind: _Optional[_Union[DataJobKind, str]] = ..., ingest: _Optional[_Union[IngestSpec, _Mapping]] = ..., compaction: _Optional[_Union[CompactionSpec, _Mapping]] = ..., match_samples: _Optional[_Union[MatchSamplesSpec, _Mapping]] = ..., derive_dataset: _Optional[_Union[DeriveDatasetSpec, _Mapping]] = ..., ingest_result: _Optional[_Union[IngestResult, _Mapping]] = ..., compaction_result: _Optional[_Union[CompactionResult, _Mapping]] = ..., dataset_result: _Optional[_Union[DatasetResult, _Mapping]] = ...) -> None: ...

class GetDataJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetDataJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class WatchDataJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchDataJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class CancelDataJobRequest(_message.Message):
    __slots__ = ("job_id", "request_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelDataJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: DataJob
    def __init__(self, job: _Optional[_Union[DataJob, _Mapping]] = ...) -> None: ...

class ListDataJobsRequest(_message.Message):
    __slots__ = ("page", "kind", "states", "feature_group")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    kind: DataJobKind
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    feature_group: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., kind: _Optional[_Union[DataJobKind, str]] = ..., states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ..., feature_group: _Optional[str] = ...) -> None: ...

class ListDataJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[DataJob]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[DataJob, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("id", "children_limit", "ancestor_depth")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ANCESTOR_DEPTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    children_limit: int
    ancestor_depth: int
    def __init__(self, id: _Optional[str] = ..., children_limit: _Optional[int] = ..., ancestor_depth: _Optional[int] = ...) -> None: ...

class GetLineageResponse(_message.Message):
    __slots__ = ("lineage", "ancestors")
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    ANCESTORS_FIELD_NUMBER: _ClassVar[int]
    lineage: _common_pb2.LineageRecord
    ancestors: _containers.RepeatedCompositeFieldContainer[_common_pb2.LineageRecord]
    def __init__(self, lineage: _Optional[_Union[_common_pb2.LineageRecord, _Mapping]] = ..., ancestors: _Optional[_Iterable[_Union[_common_pb2.LineageRecord, _Mapping]]] = ...) -> None: ...

from atlas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ID_TYPE_UNSPECIFIED: _ClassVar[IdType]
    ID_TYPE_INT64: _ClassVar[IdType]
    ID_TYPE_STRING: _ClassVar[IdType]

class PartitionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARTITION_METHOD_UNSPECIFIED: _ClassVar[PartitionMethod]
    PARTITION_METHOD_METIS: _ClassVar[PartitionMethod]
    PARTITION_METHOD_RANDOM: _ClassVar[PartitionMethod]

class TranslateDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSLATE_DIRECTION_UNSPECIFIED: _ClassVar[TranslateDirection]
    TRANSLATE_DIRECTION_ORIGINAL_TO_NEW: _ClassVar[TranslateDirection]
    TRANSLATE_DIRECTION_NEW_TO_ORIGINAL: _ClassVar[TranslateDirection]

class IdKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ID_KIND_UNSPECIFIED: _ClassVar[IdKind]
    ID_KIND_NODE: _ClassVar[IdKind]
    ID_KIND_EDGE: _ClassVar[IdKind]

class GnnModel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GNN_MODEL_UNSPECIFIED: _ClassVar[GnnModel]
    GNN_MODEL_GRAPHSAGE: _ClassVar[GnnModel]
    GNN_MODEL_GAT: _ClassVar[GnnModel]
    GNN_MODEL_RGCN: _ClassVar[GnnModel]

class GraphTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRAPH_TASK_UNSPECIFIED: _ClassVar[GraphTask]
    GRAPH_TASK_NODE_CLASSIFICATION: _ClassVar[GraphTask]
    GRAPH_TASK_LINK_PREDICTION: _ClassVar[GraphTask]

class GraphJobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRAPH_JOB_KIND_UNSPECIFIED: _ClassVar[GraphJobKind]
    GRAPH_JOB_KIND_IMPORT: _ClassVar[GraphJobKind]
    GRAPH_JOB_KIND_GENERATE: _ClassVar[GraphJobKind]
    GRAPH_JOB_KIND_PARTITION: _ClassVar[GraphJobKind]
    GRAPH_JOB_KIND_TRAIN: _ClassVar[GraphJobKind]
    GRAPH_JOB_KIND_INFER: _ClassVar[GraphJobKind]
ID_TYPE_UNSPECIFIED: IdType
ID_TYPE_INT64: IdType
ID_TYPE_STRING: IdType
PARTITION_METHOD_UNSPECIFIED: PartitionMethod
PARTITION_METHOD_METIS: PartitionMethod
PARTITION_METHOD_RANDOM: PartitionMethod
TRANSLATE_DIRECTION_UNSPECIFIED: TranslateDirection
TRANSLATE_DIRECTION_ORIGINAL_TO_NEW: TranslateDirection
TRANSLATE_DIRECTION_NEW_TO_ORIGINAL: TranslateDirection
ID_KIND_UNSPECIFIED: IdKind
ID_KIND_NODE: IdKind
ID_KIND_EDGE: IdKind
GNN_MODEL_UNSPECIFIED: GnnModel
GNN_MODEL_GRAPHSAGE: GnnModel
GNN_MODEL_GAT: GnnModel
GNN_MODEL_RGCN: GnnModel
GRAPH_TASK_UNSPECIFIED: GraphTask
GRAPH_TASK_NODE_CLASSIFICATION: GraphTask
GRAPH_TASK_LINK_PREDICTION: GraphTask
GRAPH_JOB_KIND_UNSPECIFIED: GraphJobKind
GRAPH_JOB_KIND_IMPORT: GraphJobKind
GRAPH_JOB_KIND_GENERATE: GraphJobKind
GRAPH_JOB_KIND_PARTITION: GraphJobKind
GRAPH_JOB_KIND_TRAIN: GraphJobKind
GRAPH_JOB_KIND_INFER: GraphJobKind

class TableSource(_message.Message):
    __slots__ = ("artifacts", "uri_prefix", "format")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    URI_PREFIX_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    uri_prefix: str
    format: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., uri_prefix: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class NodeTableSpec(_message.Message):
    __slots__ = ("source", "node_type", "id_column", "feature_columns", "label_column", "train_mask_column", "val_mask_column", "test_mask_column", "id_type")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TRAIN_MASK_COLUMN_FIELD_NUMBER: _ClassVar[int]
    VAL_MASK_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TEST_MASK_COLUMN_FIELD_NUMBER: _ClassVar[int]
    ID_TYPE_FIELD_NUMBER: _ClassVar[int]
    source: TableSource
    node_type: str
    id_column: str
    feature_columns: _containers.RepeatedScalarFieldContainer[str]
    label_column: str
    train_mask_column: str
    val_mask_column: str
    test_mask_column: str
    id_type: IdType
    def __init__(self, source: _Optional[_Union[TableSource, _Mapping]] = ..., node_type: _Optional[str] = ..., id_column: _Optional[str] = ..., feature_columns: _Optional[_Iterable[str]] = ..., label_column: _Optional[str] = ..., train_mask_column: _Optional[str] = ..., val_mask_column: _Optional[str] = ..., test_mask_column: _Optional[str] = ..., id_type: _Optional[_Union[IdType, str]] = ...) -> None: ...

class EdgeTableSpec(_message.Message):
    __slots__ = ("source", "edge_type", "src_column", "dst_column", "feature_columns")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EDGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    SRC_COLUMN_FIELD_NUMBER: _ClassVar[int]
    DST_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    source: TableSource
    edge_type: str
    src_column: str
    dst_column: str
    feature_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[_Union[TableSource, _Mapping]] = ..., edge_type: _Optional[str] = ..., src_column: _Optional[str] = ..., dst_column: _Optional[str] = ..., feature_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class EdgePolicy(_message.Message):
    __slots__ = ("drop_duplicates", "drop_self_loops", "add_reverse_edges", "drop_dangling_edges")
    DROP_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    DROP_SELF_LOOPS_FIELD_NUMBER: _ClassVar[int]
    ADD_REVERSE_EDGES_FIELD_NUMBER: _ClassVar[int]
    DROP_DANGLING_EDGES_FIELD_NUMBER: _ClassVar[int]
    drop_duplicates: bool
    drop_self_loops: bool
    add_reverse_edges: bool
    drop_dangling_edges: bool
    def __init__(self, drop_duplicates: bool = ..., drop_self_loops: bool = ..., add_reverse_edges: bool = ..., drop_dangling_edges: bool = ...) -> None: ...

class ImportGraphSpec(_message.Message):
    __slots__ = ("name", "id_type", "nodes", "edges", "edge_policy", "train_fraction", "val_fraction", "split_seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_TYPE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    EDGE_POLICY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FRACTION_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    id_type: IdType
    nodes: _containers.RepeatedCompositeFieldContainer[NodeTableSpec]
    edges: _containers.RepeatedCompositeFieldContainer[EdgeTableSpec]
    edge_policy: EdgePolicy
    train_fraction: float
    val_fraction: float
    split_seed: int
    def __init__(self, name: _Optional[str] = ..., id_type: _Optional[_Union[IdType, str]] = ..., nodes: _Optional[_Iterable[_Union[NodeTableSpec, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[EdgeTableSpec, _Mapping]]] = ..., edge_policy: _Optional[_Union[EdgePolicy, _Mapping]] = ..., train_fraction: _Optional[float] = ..., val_fraction: _Optional[float] = ..., split_seed: _Optional[int] = ...) -> None: ...

class GenerateGraphSpec(_message.Message):
    __slots__ = ("name", "nodes", "communities", "average_degree", "intra_fraction", "feature_dims", "feature_noise", "train_fraction", "val_fraction", "seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    COMMUNITIES_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    INTRA_FRACTION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIMS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NOISE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FRACTION_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    nodes: int
    communities: int
    average_degree: float
    intra_fraction: float
    feature_dims: int
    feature_noise: float
    train_fraction: float
    val_fraction: float
    seed: int
    def __init__(self, name: _Optional[str] = ..., nodes: _Optional[int] = ..., communities: _Optional[int] = ..., average_degree: _Optional[float] = ..., intra_fraction: _Optional[float] = ..., feature_dims: _Optional[int] = ..., feature_noise: _Optional[float] = ..., train_fraction: _Optional[float] = ..., val_fraction: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class Graph(_message.Message):
    __slots__ = ("graph_id", "name", "num_nodes", "num_edges", "node_types", "edge_types", "id_type", "node_feature_dims", "num_classes", "has_masks", "artifacts", "lineage", "import_stats", "create_time", "node_type_info", "edge_type_counts")
    class ImportStatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class EdgeTypeCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    NUM_EDGES_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPES_FIELD_NUMBER: _ClassVar[int]
    EDGE_TYPES_FIELD_NUMBER: _ClassVar[int]
    ID_TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FEATURE_DIMS_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    HAS_MASKS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    IMPORT_STATS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_INFO_FIELD_NUMBER: _ClassVar[int]
    EDGE_TYPE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    name: str
    num_nodes: int
    num_edges: int
    node_types: _containers.RepeatedScalarFieldContainer[str]
    edge_types: _containers.RepeatedScalarFieldContainer[str]
    id_type: IdType
    node_feature_dims: int
    num_classes: int
    has_masks: bool
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    lineage: _common_pb2.Lineage
    import_stats: _containers.ScalarMap[str, int]
    create_time: _timestamp_pb2.Timestamp
    node_type_info: _containers.RepeatedCompositeFieldContainer[NodeTypeInfo]
    edge_type_counts: _containers.ScalarMap[str, int]
    def __init__(self, graph_id: _Optional[str] = ..., name: _Optional[str] = ..., num_nodes: _Optional[int] = ..., num_edges: _Optional[int] = ..., node_types: _Optional[_Iterable[str]] = ..., edge_types: _Optional[_Iterable[str]] = ..., id_type: _Optional[_Union[IdType, str]] = ..., node_feature_dims: _Optional[int] = ..., num_classes: _Optional[int] = ..., has_masks: bool = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., lineage: _Optional[_Union[_common_pb2.Lineage, _Mapping]] = ..., import_stats: _Optional[_Mapping[str, int]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., node_type_info: _Optional[_Iterable[_Union[NodeTypeInfo, _Mapping]]] = ..., edge_type_counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class NodeTypeInfo(_message.Message):
    __slots__ = ("node_type", "num_nodes", "id_type", "feature_dims", "num_classes", "has_masks")
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    ID_TYPE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIMS_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    HAS_MASKS_FIELD_NUMBER: _ClassVar[int]
    node_type: str
    num_nodes: int
    id_type: IdType
    feature_dims: int
    num_classes: int
    has_masks: bool
    def __init__(self, node_type: _Optional[str] = ..., num_nodes: _Optional[int] = ..., id_type: _Optional[_Union[IdType, str]] = ..., feature_dims: _Optional[int] = ..., num_classes: _Optional[int] = ..., has_masks: bool = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ("graph_id",)
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    def __init__(self, graph_id: _Optional[str] = ...) -> None: ...

class GetGraphResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class ListGraphsRequest(_message.Message):
    __slots__ = ("page", "name_prefix")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    name_prefix: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class ListGraphsResponse(_message.Message):
    __slots__ = ("graphs", "page")
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    graphs: _containers.RepeatedCompositeFieldContainer[Graph]
    page: _common_pb2.PageResponse
    def __init__(self, graphs: _Optional[_Iterable[_Union[Graph, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DeleteGraphRequest(_message.Message):
    __slots__ = ("graph_id", "request_id")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    request_id: str
    def __init__(self, graph_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteGraphResponse(_message.Message):
    __slots__ = ("deleted_partitionings",)
    DELETED_PARTITIONINGS_FIELD_NUMBER: _ClassVar[int]
    deleted_partitionings: int
    def __init__(self, deleted_partitionings: _Optional[int] = ...) -> None: ...

class PartitionGraphSpec(_message.Message):
    __slots__ = ("graph_id", "num_partitions", "method", "num_hops", "balance_train", "balance_edges", "max_memory_bytes")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NUM_HOPS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_TRAIN_FIELD_NUMBER: _ClassVar[int]
    BALANCE_EDGES_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    num_partitions: int
    method: PartitionMethod
    num_hops: int
    balance_train: bool
    balance_edges: bool
    max_memory_bytes: int
    def __init__(self, graph_id: _Optional[str] = ..., num_partitions: _Optional[int] = ..., method: _Optional[_Union[PartitionMethod, str]] = ..., num_hops: _Optional[int] = ..., balance_train: bool = ..., balance_edges: bool = ..., max_memory_bytes: _Optional[int] = ...) -> None: ...

class IdRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Partition(_message.Message):
    __slots__ = ("index", "node_ranges", "edge_ranges", "num_nodes", "num_edges", "artifact", "id_map")
    class NodeRangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: IdRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[IdRange, _Mapping]] = ...) -> None: ...
    class EdgeRangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: IdRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[IdRange, _Mapping]] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_RANGES_FIELD_NUMBER: _ClassVar[int]
    EDGE_RANGES_FIELD_NUMBER: _ClassVar[int]
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    NUM_EDGES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ID_MAP_FIELD_NUMBER: _ClassVar[int]
    index: int
    node_ranges: _containers.MessageMap[str, IdRange]
    edge_ranges: _containers.MessageMap[str, IdRange]
    num_nodes: int
    num_edges: int
    artifact: _common_pb2.ArtifactRef
    id_map: _common_pb2.ArtifactRef
    def __init__(self, index: _Optional[int] = ..., node_ranges: _Optional[_Mapping[str, IdRange]] = ..., edge_ranges: _Optional[_Mapping[str, IdRange]] = ..., num_nodes: _Optional[int] = ..., num_edges: _Optional[int] = ..., artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., id_map: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class PartitionEstimate(_message.Message):
    __slots__ = ("peak_memory_bytes", "disk_bytes", "memory_limit_bytes", "fits", "range_map_bytes")
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    RANGE_MAP_BYTES_FIELD_NUMBER: _ClassVar[int]
    peak_memory_bytes: int
    disk_bytes: int
    memory_limit_bytes: int
    fits: bool
    range_map_bytes: int
    def __init__(self, peak_memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ..., fits: bool = ..., range_map_bytes: _Optional[int] = ...) -> None: ...

class Partitioning(_message.Message):
    __slots__ = ("partitioning_id", "graph_id", "spec", "partitions", "node_boundaries", "edge_boundaries", "partition_config", "edge_cut", "balance", "estimate", "elapsed", "peak_memory_bytes", "lineage", "create_time")
    PARTITIONING_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    NODE_BOUNDARIES_FIELD_NUMBER: _ClassVar[int]
    EDGE_BOUNDARIES_FIELD_NUMBER: _ClassVar[int]
    PARTITION_CONFIG_FIELD_NUMBER: _ClassVar[int]
    EDGE_CUT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    partitioning_id: str
    graph_id: str
    spec: PartitionGraphSpec
    partitions: _containers.RepeatedCompositeFieldContainer[Partition]
    node_boundaries: _containers.RepeatedScalarFieldContainer[int]
    edge_boundaries: _containers.RepeatedScalarFieldContainer[int]
    partition_config: _common_pb2.ArtifactRef
    edge_cut: int
    balance: float
    estimate: PartitionEstimate
    elapsed: _duration_pb2.Duration
    peak_memory_bytes: int
    lineage: _common_pb2.Lineage
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, partitioning_id: _Optional[str] = ..., graph_id: _Optional[str] = ..., spec: _Optional[_Union[PartitionGraphSpec, _Mapping]] = ..., partitions: _Optional[_Iterable[_Union[Partition, _Mapping]]] = ..., node_boundaries: _Optional[_Iterable[int]] = ..., edge_boundaries: _Optional[_Iterable[int]] = ..., partition_config: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., edge_cut: _Optional[int] = ..., balance: _Optional[float] = ..., estimate: _Optional[_Union[PartitionEstimate, _Mapping]] = ..., elapsed: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., peak_memory_bytes: _Optional[int] = ..., lineage: _Optional[_Union[_common_pb2.Lineage, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EstimatePartitioningRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: PartitionGraphSpec
    def __init__(self, spec: _Optional[_Union[PartitionGraphSpec, _Mapping]] = ...) -> None: ...

class EstimatePartitioningResponse(_message.Message):
    __slots__ = ("estimate",)
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    estimate: PartitionEstimate
    def __init__(self, estimate: _Optional[_Union[PartitionEstimate, _Mapping]] = ...) -> None: ...

class GetPartitioningRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.GraphRef
    def __init__(self, ref: _Optional[_Union[_common_pb2.GraphRef, _Mapping]] = ...) -> None: ...

class GetPartitioningResponse(_message.Message):
    __slots__ = ("partitioning",)
    PARTITIONING_FIELD_NUMBER: _ClassVar[int]
    partitioning: Partitioning
    def __init__(self, partitioning: _Optional[_Union[Partitioning, _Mapping]] = ...) -> None: ...

class ListPartitioningsRequest(_message.Message):
    __slots__ = ("graph_id", "page")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    page: _common_pb2.PageRequest
    def __init__(self, graph_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListPartitioningsResponse(_message.Message):
    __slots__ = ("partitionings", "page")
    PARTITIONINGS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    partitionings: _containers.RepeatedCompositeFieldContainer[Partitioning]
    page: _common_pb2.PageResponse
    def __init__(self, partitionings: _Optional[_Iterable[_Union[Partitioning, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class TranslateIdsRequest(_message.Message):
    __slots__ = ("ref", "kind", "direction", "type", "int64_ids", "string_ids")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INT64_IDS_FIELD_NUMBER: _ClassVar[int]
    STRING_IDS_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.GraphRef
    kind: IdKind
    direction: TranslateDirection
    type: str
    int64_ids: _containers.RepeatedScalarFieldContainer[int]
    string_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[_common_pb2.GraphRef, _Mapping]] = ..., kind: _Optional[_Union[IdKind, str]] = ..., direction: _Optional[_Union[TranslateDirection, str]] = ..., type: _Optional[str] = ..., int64_ids: _Optional[_Iterable[int]] = ..., string_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TranslateIdsResponse(_message.Message):
    __slots__ = ("new_ids", "partitions", "local_ids", "original_int64_ids", "original_string_ids")
    NEW_IDS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_IDS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_INT64_IDS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_STRING_IDS_FIELD_NUMBER: _ClassVar[int]
    new_ids: _containers.RepeatedScalarFieldContainer[int]
    partitions: _containers.RepeatedScalarFieldContainer[int]
    local_ids: _containers.RepeatedScalarFieldContainer[int]
    original_int64_ids: _containers.RepeatedScalarFieldContainer[int]
    original_string_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, new_ids: _Optional[_Iterable[int]] = ..., partitions: _Optional[_Iterable[int]] = ..., local_ids: _Optional[_Iterable[int]] = ..., original_int64_ids: _Optional[_Iterable[int]] = ..., original_string_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LinkPredictionSpec(_message.Message):
    __slots__ = ("test_fraction", "val_fraction", "num_negatives", "eval_negatives", "split_seed", "target_edge_type")
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NUM_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    EVAL_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEED_FIELD_NUMBER: _ClassVar[int]
    TARGET_EDGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    test_fraction: float
    val_fraction: float
    num_negatives: int
    eval_negatives: int
    split_seed: int
    target_edge_type: str
    def __init__(self, test_fraction: _Optional[float] = ..., val_fraction: _Optional[float] = ..., num_negatives: _Optional[int] = ..., eval_negatives: _Optional[int] = ..., split_seed: _Optional[int] = ..., target_edge_type: _Optional[str] = ...) -> None: ...

class TrainGraphSpec(_message.Message):
    __slots__ = ("ref", "num_trainers", "num_servers", "model", "fan_outs", "hidden_dims", "num_heads", "dropout", "epochs", "batch_size", "learning_rate", "checkpoint_every_epochs", "resume_from", "write_embeddings", "write_predictions", "backend", "resources", "seed", "params", "hosts", "skip_serving_bundle", "embeddings_feature_group", "task", "link_prediction", "target_node_type")
    REF_FIELD_NUMBER: _ClassVar[int]
    NUM_TRAINERS_FIELD_NUMBER: _ClassVar[int]
    NUM_SERVERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FAN_OUTS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_DIMS_FIELD_NUMBER: _ClassVar[int]
    NUM_HEADS_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    WRITE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    WRITE_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    SKIP_SERVING_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LINK_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.GraphRef
    num_trainers: int
    num_servers: int
    model: GnnModel
    fan_outs: _containers.RepeatedScalarFieldContainer[int]
    hidden_dims: int
    num_heads: int
    dropout: float
    epochs: int
    batch_size: int
    learning_rate: float
    checkpoint_every_epochs: int
    resume_from: _common_pb2.ArtifactRef
    write_embeddings: bool
    write_predictions: bool
    backend: str
    resources: _common_pb2.ResourceRequest
    seed: int
    params: _struct_pb2.Struct
    hosts: _containers.RepeatedScalarFieldContainer[str]
    skip_serving_bundle: bool
    embeddings_feature_group: str
    task: GraphTask
    link_prediction: LinkPredictionSpec
    target_node_type: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.GraphRef, _Mapping]] = ..., num_trainers: _Optional[int] = ..., num_servers: _Optional[int] = ..., model: _Optional[_Union[GnnModel, str]] = ..., fan_outs: _Optional[_Iterable[int]] = ..., hidden_dims: _Optional[int] = ..., num_heads: _Optional[int] = ..., dropout: _Optional[float] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., checkpoint_every_epochs: _Optional[int] = ..., resume_from: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., write_embeddings: bool = ..., write_predictions: bool = ..., backend: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ..., seed: _Optional[int] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., hosts: _Optional[_Iterable[str]] = ..., skip_serving_bundle: bool = ..., embeddings_feature_group: _Optional[str] = ..., task: _Optional[_Union[GraphTask, str]] = ..., link_prediction: _Optional[_Union[LinkPredictionSpec, _Mapping]] = ..., target_node_type: _Optional[str] = ...) -> None: ...

class InferGraphSpec(_message.Message):
    __slots__ = ("ref", "model_bundle", "write_embeddings", "write_predictions", "node_int64_ids", "node_string_ids")
    REF_FIELD_NUMBER: _ClassVar[int]
    MODEL_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    WRITE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    WRITE_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    NODE_INT64_IDS_FIELD_NUMBER: _ClassVar[int]
    NODE_STRING_IDS_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.GraphRef
    model_bundle: _common_pb2.ArtifactRef
    write_embeddings: bool
    write_predictions: bool
    node_int64_ids: _containers.RepeatedScalarFieldContainer[int]
    node_string_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[_common_pb2.GraphRef, _Mapping]] = ..., model_bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., write_embeddings: bool = ..., write_predictions: bool = ..., node_int64_ids: _Optional[_Iterable[int]] = ..., node_string_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TrainGraphResult(_message.Message):
    __slots__ = ("model_bundle", "embeddings", "predictions", "metrics", "epoch_time", "checkpoints", "ip_config", "launch_command", "serving_bundle", "embeddings_feature_group", "embeddings_by_type", "embeddings_feature_groups_by_type")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EmbeddingsByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ArtifactRef
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...
    class EmbeddingsFeatureGroupsByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.FeatureGroupRef
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ...) -> None: ...
    MODEL_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_TIME_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    IP_CONFIG_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_COMMAND_FIELD_NUMBER: _ClassVar[int]
    SERVING_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FEATURE_GROUPS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    model_bundle: _common_pb2.ArtifactRef
    embeddings: _common_pb2.ArtifactRef
    predictions: _common_pb2.ArtifactRef
    metrics: _containers.ScalarMap[str, float]
    epoch_time: _duration_pb2.Duration
    checkpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    ip_config: str
    launch_command: str
    serving_bundle: _common_pb2.ArtifactRef
    embeddings_feature_group: _common_pb2.FeatureGroupRef
    embeddings_by_type: _containers.MessageMap[str, _common_pb2.ArtifactRef]
    embeddings_feature_groups_by_type: _containers.MessageMap[str, _common_pb2.FeatureGroupRef]
    def __init__(self, model_bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., embeddings: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., predictions: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., epoch_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., checkpoints: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., ip_config: _Optional[str] = ..., launch_command: _Optional[str] = ..., serving_bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., embeddings_feature_group: _Optional[_Union[_common_pb2.FeatureGroupRef, _Mapping]] = ..., embeddings_by_type: _Optional[_Mapping[str, _common_pb2.ArtifactRef]] = ..., embeddings_feature_groups_by_type: _Optional[_Mapping[str, _common_pb2.FeatureGroupRef]] = ...) -> None: ...

class GraphJob(_message.Message):
    __slots__ = ("status", "kind", "import_graph", "generate_graph", "partition_graph", "train", "infer", "graph", "partitioning", "train_result")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IMPORT_GRAPH_FIELD_NUMBER: _ClassVar[int]
    GENERATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    PARTITION_GRAPH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    INFER_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    PARTITIONING_FIELD_NUMBER: _ClassVar[int]
    TRAIN_RESULT_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    kind: GraphJobKind
    import_graph: ImportGraphSpec
    generate_graph: GenerateGraphSpec
    partition_graph: PartitionGraphSpec
    train: TrainGraphSpec
    infer: InferGraphSpec
    graph: Graph
    partitioning: Partitioning
    train_result: TrainGraphResult
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, _Mapping]] = ..., kind: _Optional[_Union[GraphJobKind, str]] = ..., import_graph: _Optional[_Union[ImportGraphSpec, _Mapping]] = ..., generate_graph: _Optional[_Union[GenerateGraphSpec, _Mapping]] = ..., partition_graph: _Optional[_Union[PartitionGraphSpec, _Mapping]] = ..., train: _Optional[_Union[TrainGraphSpec, _Mapping]] = ..., infer: _Optional[_Union[InferGraphSpec, _Mapping]] = ..., graph: _Optional[_Union[Graph, _Mapping]] = ..., partitioning: _Optional[_Union[Partitioning, _Mapping]] = ..., train_result: _Optional[_Union[TrainGraphResult, _Mapping]] = ...) -> None: ...

class SubmitGraphJobRequest(_message.Message):
    __slots__ = ("import_graph", "generate_graph", "partition_graph", "train", "infer", "request_id")
    IMPORT_GRAPH_FIELD_NUMBER: _ClassVar[int]
    GENERATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    PARTITION_GRAPH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    INFER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    import_graph: ImportGraphSpec
    generate_graph: GenerateGraphSpec
    partition_graph: PartitionGraphSpec
    train: TrainGraphSpec
    infer: InferGraphSpec
    request_id: str
    def __init__(self, import_graph: _Optional[_Union[ImportGraphSpec, _Mapping]] = ..., generate_graph: _Optional[_Union[GenerateGraphSpec, _Mapping]] = ..., partition_graph: _Optional[_Union[PartitionGraphSpec, _Mapping]] = ..., train: _Optional[_Union[TrainGraphSpec, _Mapping]] = ..., infer: _Optional[_Union[InferGraphSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitGraphJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: GraphJob
    def __init__(self, job: _Optional[_Union[GraphJob, _Mapping]] = ...) -> None: ...

class GetGraphJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetGraphJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: GraphJob
    def __init__(self, job: _Optional[_Union[GraphJob, _Mapping]] = ...) -> None: ...

class WatchGraphJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchGraphJobResponse(_message.Message):
    __slots__ = ("job", "epoch", "metrics", "event_time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    job: GraphJob
    epoch: int
    metrics: _containers.ScalarMap[str, float]
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, job: _Optional[_Union[GraphJob, _Mapping]] = ..., epoch: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelGraphJobRequest(_message.Message):
    __slots__ = ("job_id", "request_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelGraphJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: GraphJob
    def __init__(self, job: _Optional[_Union[GraphJob, _Mapping]] = ...) -> None: ...

class ListGraphJobsRequest(_message.Message):
    __slots__ = ("page", "graph_id", "kind", "states")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    graph_id: str
    kind: GraphJobKind
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., graph_id: _Optional[str] = ..., kind: _Optional[_Union[GraphJobKind, str]] = ..., states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ...) -> None: ...

class ListGraphJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[GraphJob]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[GraphJob, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

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

from atlas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VariantRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VARIANT_ROLE_UNSPECIFIED: _ClassVar[VariantRole]
    VARIANT_ROLE_LIVE: _ClassVar[VariantRole]
    VARIANT_ROLE_SHADOW: _ClassVar[VariantRole]

class FallbackPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FALLBACK_POLICY_UNSPECIFIED: _ClassVar[FallbackPolicy]
    FALLBACK_POLICY_FAIL: _ClassVar[FallbackPolicy]
    FALLBACK_POLICY_DEFAULTS: _ClassVar[FallbackPolicy]
    FALLBACK_POLICY_MISSING: _ClassVar[FallbackPolicy]

class EndpointState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINT_STATE_UNSPECIFIED: _ClassVar[EndpointState]
    ENDPOINT_STATE_CREATING: _ClassVar[EndpointState]
    ENDPOINT_STATE_SERVING: _ClassVar[EndpointState]
    ENDPOINT_STATE_UPDATING: _ClassVar[EndpointState]
    ENDPOINT_STATE_ROLLING_BACK: _ClassVar[EndpointState]
    ENDPOINT_STATE_FAILED: _ClassVar[EndpointState]
    ENDPOINT_STATE_DELETING: _ClassVar[EndpointState]

class InsufficientLabelsAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSUFFICIENT_LABELS_ACTION_UNSPECIFIED: _ClassVar[InsufficientLabelsAction]
    INSUFFICIENT_LABELS_ACTION_HOLD: _ClassVar[InsufficientLabelsAction]
    INSUFFICIENT_LABELS_ACTION_ROLL_BACK: _ClassVar[InsufficientLabelsAction]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_PENDING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_PREPARING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_SHIFTING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_BAKING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_SUCCEEDED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ROLLING_BACK: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ROLLED_BACK: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_CANCELLED: _ClassVar[DeploymentState]

class BadCaseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BAD_CASE_REASON_UNSPECIFIED: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_LOW_CONFIDENCE: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_HIGH_DRIFT: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_SHADOW_DISAGREEMENT: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH: _ClassVar[BadCaseReason]

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_FEATURE_DRIFT: _ClassVar[AlertKind]
    ALERT_KIND_PREDICTION_DRIFT: _ClassVar[AlertKind]
    ALERT_KIND_ERROR_RATE: _ClassVar[AlertKind]
    ALERT_KIND_LATENCY: _ClassVar[AlertKind]
    ALERT_KIND_ROLLBACK: _ClassVar[AlertKind]
    ALERT_KIND_MODEL_QUALITY: _ClassVar[AlertKind]

class GroundTruthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUND_TRUTH_STATUS_UNSPECIFIED: _ClassVar[GroundTruthStatus]
    GROUND_TRUTH_STATUS_ACCEPTED: _ClassVar[GroundTruthStatus]
    GROUND_TRUTH_STATUS_UPDATED: _ClassVar[GroundTruthStatus]
    GROUND_TRUTH_STATUS_DUPLICATE: _ClassVar[GroundTruthStatus]
    GROUND_TRUTH_STATUS_REJECTED: _ClassVar[GroundTruthStatus]
VARIANT_ROLE_UNSPECIFIED: VariantRole
VARIANT_ROLE_LIVE: VariantRole
VARIANT_ROLE_SHADOW: VariantRole
FALLBACK_POLICY_UNSPECIFIED: FallbackPolicy
FALLBACK_POLICY_FAIL: FallbackPolicy
FALLBACK_POLICY_DEFAULTS: FallbackPolicy
FALLBACK_POLICY_MISSING: FallbackPolicy
ENDPOINT_STATE_UNSPECIFIED: EndpointState
ENDPOINT_STATE_CREATING: EndpointState
ENDPOINT_STATE_SERVING: EndpointState
ENDPOINT_STATE_UPDATING: EndpointState
ENDPOINT_STATE_ROLLING_BACK: EndpointState
ENDPOINT_STATE_FAILED: EndpointState
ENDPOINT_STATE_DELETING: EndpointState
INSUFFICIENT_LABELS_ACTION_UNSPECIFIED: InsufficientLabelsAction
INSUFFICIENT_LABELS_ACTION_HOLD: InsufficientLabelsAction
INSUFFICIENT_LABELS_ACTION_ROLL_BACK: InsufficientLabelsAction
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_PENDING: DeploymentState
DEPLOYMENT_STATE_PREPARING: DeploymentState
DEPLOYMENT_STATE_SHIFTING: DeploymentState
DEPLOYMENT_STATE_BAKING: DeploymentState
DEPLOYMENT_STATE_SUCCEEDED: DeploymentState
DEPLOYMENT_STATE_ROLLING_BACK: DeploymentState
DEPLOYMENT_STATE_ROLLED_BACK: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState
DEPLOYMENT_STATE_CANCELLED: DeploymentState
BAD_CASE_REASON_UNSPECIFIED: BadCaseReason
BAD_CASE_REASON_LOW_CONFIDENCE: BadCaseReason
BAD_CASE_REASON_HIGH_DRIFT: BadCaseReason
BAD_CASE_REASON_SHADOW_DISAGREEMENT: BadCaseReason
BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH: BadCaseReason
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_FEATURE_DRIFT: AlertKind
ALERT_KIND_PREDICTION_DRIFT: AlertKind
ALERT_KIND_ERROR_RATE: AlertKind
ALERT_KIND_LATENCY: AlertKind
ALERT_KIND_ROLLBACK: AlertKind
ALERT_KIND_MODEL_QUALITY: AlertKind
GROUND_TRUTH_STATUS_UNSPECIFIED: GroundTruthStatus
GROUND_TRUTH_STATUS_ACCEPTED: GroundTruthStatus
GROUND_TRUTH_STATUS_UPDATED: GroundTruthStatus
GROUND_TRUTH_STATUS_DUPLICATE: GroundTruthStatus
GROUND_TRUTH_STATUS_REJECTED: GroundTruthStatus

class ModelVersion(_message.Message):
    __slots__ = ("ref", "bundle", "input_schema", "task_type", "classes", "metrics", "lineage", "aliases", "description", "labels", "create_time", "has_training_stats")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    HAS_TRAINING_STATS_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    bundle: _common_pb2.ArtifactRef
    input_schema: _common_pb2.TableSchema
    task_type: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.ScalarMap[str, float]
    lineage: _common_pb2.Lineage
    aliases: _containers.RepeatedScalarFieldContainer[str]
    description: str
    labels: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    has_training_stats: bool
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., input_schema: _Optional[_Union[_common_pb2.TableSchema, _Mapping]] = ..., task_type: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., lineage: _Optional[_Union[_common_pb2.Lineage, _Mapping]] = ..., aliases: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., has_training_stats: bool = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "latest_version", "aliases", "description", "create_time")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    latest_version: int
    aliases: _containers.ScalarMap[str, int]
    description: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., latest_version: _Optional[int] = ..., aliases: _Optional[_Mapping[str, int]] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterModelVersionRequest(_message.Message):
    __slots__ = ("model_name", "bundle", "description", "labels", "aliases", "parents", "request_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    bundle: _common_pb2.ArtifactRef
    description: str
    labels: _containers.ScalarMap[str, str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    parents: _containers.RepeatedCompositeFieldContainer[_common_pb2.LineageParent]
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., aliases: _Optional[_Iterable[str]] = ..., parents: _Optional[_Iterable[_Union[_common_pb2.LineageParent, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RegisterModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class GetModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page", "name_prefix")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    name_prefix: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "page")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    page: _common_pb2.PageResponse
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("model_name", "page")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    page: _common_pb2.PageRequest
    def __init__(self, model_name: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("model_versions", "page")
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    model_versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    page: _common_pb2.PageResponse
    def __init__(self, model_versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class SetModelAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "version", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    version: int
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetModelAliasResponse(_message.Message):
    __slots__ = ("model_version", "previous_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    previous_version: int
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., previous_version: _Optional[int] = ...) -> None: ...

class DeleteModelAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteModelAliasResponse(_message.Message):
    __slots__ = ("previous_version",)
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    previous_version: int
    def __init__(self, previous_version: _Optional[int] = ...) -> None: ...

class DeleteModelVersionRequest(_message.Message):
    __slots__ = ("ref", "delete_bundle", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    DELETE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    delete_bundle: bool
    request_id: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., delete_bundle: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class BatchingConfig(_message.Message):
    __slots__ = ("disabled", "max_batch_size", "max_delay")
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_FIELD_NUMBER: _ClassVar[int]
    disabled: bool
    max_batch_size: int
    max_delay: _duration_pb2.Duration
    def __init__(self, disabled: bool = ..., max_batch_size: _Optional[int] = ..., max_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CapacityConfig(_message.Message):
    __slots__ = ("max_concurrency", "max_queue", "idle_ttl", "warm", "memory_budget_bytes")
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_concurrency: int
    max_queue: int
    idle_ttl: _duration_pb2.Duration
    warm: bool
    memory_budget_bytes: int
    def __init__(self, max_concurrency: _Optional[int] = ..., max_queue: _Optional[int] = ..., idle_ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., warm: bool = ..., memory_budget_bytes: _Optional[int] = ...) -> None: ...

class FeatureLookup(_message.Message):
    __slots__ = ("feature_groups", "feature_mapping", "timeout", "fallback")
    class FeatureMappingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FEATURE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_MAPPING_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    feature_groups: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureGroupRef]
    feature_mapping: _containers.ScalarMap[str, str]
    timeout: _duration_pb2.Duration
    fallback: FallbackPolicy
    def __init__(self, feature_groups: _Optional[_Iterable[_Union[_common_pb2.FeatureGroupRef, _Mapping]]] = ..., feature_mapping: _Optional[_Mapping[str, str]] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., fallback: _Optional[_Union[FallbackPolicy, str]] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("name", "model", "role", "weight", "shadow_fraction", "replicas", "resources", "batching", "resolved_version", "capacity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FRACTION_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: _common_pb2.ModelRef
    role: VariantRole
    weight: float
    shadow_fraction: float
    replicas: int
    resources: _common_pb2.ResourceRequest
    batching: BatchingConfig
    resolved_version: int
    capacity: CapacityConfig
    def __init__(self, name: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., role: _Optional[_Union[VariantRole, str]] = ..., weight: _Optional[float] = ..., shadow_fraction: _Optional[float] = ..., replicas: _Optional[int] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ..., batching: _Optional[_Union[BatchingConfig, _Mapping]] = ..., resolved_version: _Optional[int] = ..., capacity: _Optional[_Union[CapacityConfig, _Mapping]] = ...) -> None: ...

class CaptureConfig(_message.Message):
    __slots__ = ("enabled", "sample_fraction", "flush_rows", "flush_interval")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    FLUSH_ROWS_FIELD_NUMBER: _ClassVar[int]
    FLUSH_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    sample_fraction: float
    flush_rows: int
    flush_interval: _duration_pb2.Duration
    def __init__(self, enabled: bool = ..., sample_fraction: _Optional[float] = ..., flush_rows: _Optional[int] = ..., flush_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class QualityThreshold(_message.Message):
    __slots__ = ("metric", "threshold")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    metric: str
    threshold: float
    def __init__(self, metric: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class QualityConfig(_message.Message):
    __slots__ = ("enabled", "sample_fraction", "entity_feature", "thresholds", "window", "min_labeled")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FEATURE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_LABELED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    sample_fraction: float
    entity_feature: str
    thresholds: _containers.RepeatedCompositeFieldContainer[QualityThreshold]
    window: _duration_pb2.Duration
    min_labeled: int
    def __init__(self, enabled: bool = ..., sample_fraction: _Optional[float] = ..., entity_feature: _Optional[str] = ..., thresholds: _Optional[_Iterable[_Union[QualityThreshold, _Mapping]]] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., min_labeled: _Optional[int] = ...) -> None: ...

class EndpointSpec(_message.Message):
    __slots__ = ("name", "variants", "capacity", "feature_lookup", "capture", "description", "labels", "quality")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LOOKUP_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    capacity: CapacityConfig
    feature_lookup: FeatureLookup
    capture: CaptureConfig
    description: str
    labels: _containers.ScalarMap[str, str]
    quality: QualityConfig
    def __init__(self, name: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., capacity: _Optional[_Union[CapacityConfig, _Mapping]] = ..., feature_lookup: _Optional[_Union[FeatureLookup, _Mapping]] = ..., capture: _Optional[_Union[CaptureConfig, _Mapping]] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., quality: _Optional[_Union[QualityConfig, _Mapping]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("spec", "state", "active_deployment_id", "last_deployment_id", "etag", "create_time", "update_time")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    spec: EndpointSpec
    state: EndpointState
    active_deployment_id: str
    last_deployment_id: str
    etag: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, spec: _Optional[_Union[EndpointSpec, _Mapping]] = ..., state: _Optional[_Union[EndpointState, str]] = ..., active_deployment_id: _Optional[str] = ..., last_deployment_id: _Optional[str] = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEndpointRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: EndpointSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[EndpointSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateEndpointResponse(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: Endpoint
    def __init__(self, endpoint: _Optional[_Union[Endpoint, _Mapping]] = ...) -> None: ...

class GetEndpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetEndpointResponse(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: Endpoint
    def __init__(self, endpoint: _Optional[_Union[Endpoint, _Mapping]] = ...) -> None: ...

class ListEndpointsRequest(_message.Message):
    __slots__ = ("page", "name_prefix")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    name_prefix: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class ListEndpointsResponse(_message.Message):
    __slots__ = ("endpoints", "page")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    page: _common_pb2.PageResponse
    def __init__(self, endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class UpdateEndpointRequest(_message.Message):
    __slots__ = ("name", "capacity", "feature_lookup", "capture", "description", "etag", "request_id", "quality")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LOOKUP_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity: CapacityConfig
    feature_lookup: FeatureLookup
    capture: CaptureConfig
    description: str
    etag: str
    request_id: str
    quality: QualityConfig
    def __init__(self, name: _Optional[str] = ..., capacity: _Optional[_Union[CapacityConfig, _Mapping]] = ..., feature_lookup: _Optional[_Union[FeatureLookup, _Mapping]] = ..., capture: _Optional[_Union[CaptureConfig, _Mapping]] = ..., description: _Optional[str] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ..., quality: _Optional[_Union[QualityConfig, _Mapping]] = ...) -> None: ...

class UpdateEndpointResponse(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: Endpoint
    def __init__(self, endpoint: _Optional[_Union[Endpoint, _Mapping]] = ...) -> None: ...

class DeleteEndpointRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteEndpointResponse(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: Endpoint
    def __init__(self, endpoint: _Optional[_Union[Endpoint, _Mapping]] = ...) -> None: ...

class ShadowComparison(_message.Message):
    __slots__ = ("live_variant", "compared", "label_agreement", "mean_abs_score_diff", "p50_ms", "p99_ms", "errors")
    LIVE_VARIANT_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    LABEL_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_SCORE_DIFF_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    live_variant: str
    compared: int
    label_agreement: float
    mean_abs_score_diff: float
    p50_ms: float
    p99_ms: float
    errors: int
    def __init__(self, live_variant: _Optional[str] = ..., compared: _Optional[int] = ..., label_agreement: _Optional[float] = ..., mean_abs_score_diff: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., errors: _Optional[int] = ...) -> None: ...

class VariantStats(_message.Message):
    __slots__ = ("variant", "model_version", "qps", "p50_ms", "p99_ms", "error_rate", "rejected", "mean_batch_size", "queue_depth", "loaded_replicas", "cold_starts", "last_cold_start", "shadow", "traffic_percent", "quality")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    QPS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LOADED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    COLD_STARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_COLD_START_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    variant: str
    model_version: int
    qps: float
    p50_ms: float
    p99_ms: float
    error_rate: float
    rejected: int
    mean_batch_size: float
    queue_depth: int
    loaded_replicas: int
    cold_starts: int
    last_cold_start: _duration_pb2.Duration
    shadow: ShadowComparison
    traffic_percent: float
    quality: VariantQuality
    def __init__(self, variant: _Optional[str] = ..., model_version: _Optional[int] = ..., qps: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., error_rate: _Optional[float] = ..., rejected: _Optional[int] = ..., mean_batch_size: _Optional[float] = ..., queue_depth: _Optional[int] = ..., loaded_replicas: _Optional[int] = ..., cold_starts: _Optional[int] = ..., last_cold_start: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., shadow: _Optional[_Union[ShadowComparison, _Mapping]] = ..., traffic_percent: _Optional[float] = ..., quality: _Optional[_Union[VariantQuality, _Mapping]] = ...) -> None: ...

class GetEndpointStatsRequest(_message.Message):
    __slots__ = ("name", "window", "quality_window")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    QUALITY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    window: _duration_pb2.Duration
    quality_window: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., quality_window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetEndpointStatsResponse(_message.Message):
    __slots__ = ("variants", "start_time", "end_time")
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[VariantStats]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, variants: _Optional[_Iterable[_Union[VariantStats, _Mapping]]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CanaryPolicy(_message.Message):
    __slots__ = ("canary_percent", "bake_time")
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    BAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    canary_percent: float
    bake_time: _duration_pb2.Duration
    def __init__(self, canary_percent: _Optional[float] = ..., bake_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LinearPolicy(_message.Message):
    __slots__ = ("step_percent", "step_interval")
    STEP_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STEP_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    step_percent: float
    step_interval: _duration_pb2.Duration
    def __init__(self, step_percent: _Optional[float] = ..., step_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class BlueGreenPolicy(_message.Message):
    __slots__ = ("bake_time",)
    BAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    bake_time: _duration_pb2.Duration
    def __init__(self, bake_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AllAtOncePolicy(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PromoteIfBetterPolicy(_message.Message):
    __slots__ = ("metric", "min_labeled", "max_duration", "shadow_fraction")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_LABELED_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FRACTION_FIELD_NUMBER: _ClassVar[int]
    metric: str
    min_labeled: int
    max_duration: _duration_pb2.Duration
    shadow_fraction: float
    def __init__(self, metric: _Optional[str] = ..., min_labeled: _Optional[int] = ..., max_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., shadow_fraction: _Optional[float] = ...) -> None: ...

class TrafficPolicy(_message.Message):
    __slots__ = ("all_at_once", "canary", "linear", "blue_green", "promote_if_better", "final_bake_time")
    ALL_AT_ONCE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    LINEAR_FIELD_NUMBER: _ClassVar[int]
    BLUE_GREEN_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_IF_BETTER_FIELD_NUMBER: _ClassVar[int]
    FINAL_BAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    all_at_once: AllAtOncePolicy
    canary: CanaryPolicy
    linear: LinearPolicy
    blue_green: BlueGreenPolicy
    promote_if_better: PromoteIfBetterPolicy
    final_bake_time: _duration_pb2.Duration
    def __init__(self, all_at_once: _Optional[_Union[AllAtOncePolicy, _Mapping]] = ..., canary: _Optional[_Union[CanaryPolicy, _Mapping]] = ..., linear: _Optional[_Union[LinearPolicy, _Mapping]] = ..., blue_green: _Optional[_Union[BlueGreenPolicy, _Mapping]] = ..., promote_if_better: _Optional[_Union[PromoteIfBetterPolicy, _Mapping]] = ..., final_bake_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AlarmConfig(_message.Message):
    __slots__ = ("max_error_rate", "max_p99_latency", "window", "min_requests", "disable_auto_rollback", "quality_gate")
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_P99_LATENCY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DISABLE_AUTO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    QUALITY_GATE_FIELD_NUMBER: _ClassVar[int]
    max_error_rate: float
    max_p99_latency: _duration_pb2.Duration
    window: _duration_pb2.Duration
    min_requests: int
    disable_auto_rollback: bool
    quality_gate: QualityGate
    def __init__(self, max_error_rate: _Optional[float] = ..., max_p99_latency: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., min_requests: _Optional[int] = ..., disable_auto_rollback: bool = ..., quality_gate: _Optional[_Union[QualityGate, _Mapping]] = ...) -> None: ...

class QualityGate(_message.Message):
    __slots__ = ("metric", "min_labeled", "max_drop", "on_insufficient_labels")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_LABELED_FIELD_NUMBER: _ClassVar[int]
    MAX_DROP_FIELD_NUMBER: _ClassVar[int]
    ON_INSUFFICIENT_LABELS_FIELD_NUMBER: _ClassVar[int]
    metric: str
    min_labeled: int
    max_drop: float
    on_insufficient_labels: InsufficientLabelsAction
    def __init__(self, metric: _Optional[str] = ..., min_labeled: _Optional[int] = ..., max_drop: _Optional[float] = ..., on_insufficient_labels: _Optional[_Union[InsufficientLabelsAction, str]] = ...) -> None: ...

class AlarmEvent(_message.Message):
    __slots__ = ("variant", "metric", "observed", "threshold", "fire_time")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    variant: str
    metric: str
    observed: float
    threshold: float
    fire_time: _timestamp_pb2.Timestamp
    def __init__(self, variant: _Optional[str] = ..., metric: _Optional[str] = ..., observed: _Optional[float] = ..., threshold: _Optional[float] = ..., fire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("deployment_id", "endpoint_name", "state", "target_variants", "previous_variants", "policy", "alarms", "traffic", "step", "total_steps", "alarm_events", "error", "create_time", "update_time", "end_time", "request_id")
    class TrafficEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    ALARM_EVENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    endpoint_name: str
    state: DeploymentState
    target_variants: _containers.RepeatedCompositeFieldContainer[Variant]
    previous_variants: _containers.RepeatedCompositeFieldContainer[Variant]
    policy: TrafficPolicy
    alarms: AlarmConfig
    traffic: _containers.ScalarMap[str, float]
    step: int
    total_steps: int
    alarm_events: _containers.RepeatedCompositeFieldContainer[AlarmEvent]
    error: _common_pb2.JobError
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., endpoint_name: _Optional[str] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., target_variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., previous_variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., policy: _Optional[_Union[TrafficPolicy, _Mapping]] = ..., alarms: _Optional[_Union[AlarmConfig, _Mapping]] = ..., traffic: _Optional[_Mapping[str, float]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., alarm_events: _Optional[_Iterable[_Union[AlarmEvent, _Mapping]]] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitDeploymentRequest(_message.Message):
    __slots__ = ("endpoint_name", "variants", "policy", "alarms", "request_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    policy: TrafficPolicy
    alarms: AlarmConfig
    request_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., policy: _Optional[_Union[TrafficPolicy, _Mapping]] = ..., alarms: _Optional[_Union[AlarmConfig, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class WatchDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class WatchDeploymentResponse(_message.Message):
    __slots__ = ("deployment", "event")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    event: str
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., event: _Optional[str] = ...) -> None: ...

class CancelDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id", "request_id")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    request_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("endpoint_name", "page")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    page: _common_pb2.PageRequest
    def __init__(self, endpoint_name: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "page")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    page: _common_pb2.PageResponse
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class RollbackEndpointRequest(_message.Message):
    __slots__ = ("endpoint_name", "request_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    request_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RollbackEndpointResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class PredictRow(_message.Message):
    __slots__ = ("features", "entity_id", "overrides")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    features: InlineFeatures
    entity_id: _common_pb2.Value
    overrides: _containers.MessageMap[str, _common_pb2.Value]
    def __init__(self, features: _Optional[_Union[InlineFeatures, _Mapping]] = ..., entity_id: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., overrides: _Optional[_Mapping[str, _common_pb2.Value]] = ...) -> None: ...

class InlineFeatures(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, _common_pb2.Value]
    def __init__(self, values: _Optional[_Mapping[str, _common_pb2.Value]] = ...) -> None: ...

class PredictOptions(_message.Message):
    __slots__ = ("explain", "target_variant", "return_all_scores")
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    TARGET_VARIANT_FIELD_NUMBER: _ClassVar[int]
    RETURN_ALL_SCORES_FIELD_NUMBER: _ClassVar[int]
    explain: bool
    target_variant: str
    return_all_scores: bool
    def __init__(self, explain: bool = ..., target_variant: _Optional[str] = ..., return_all_scores: bool = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "value", "scores", "contributions", "fallback_used", "warnings")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ContributionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    label: str
    value: float
    scores: _containers.ScalarMap[str, float]
    contributions: _containers.ScalarMap[str, float]
    fallback_used: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, label: _Optional[str] = ..., value: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., contributions: _Optional[_Mapping[str, float]] = ..., fallback_used: bool = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("endpoint_name", "row", "options", "request_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    row: PredictRow
    options: PredictOptions
    request_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., row: _Optional[_Union[PredictRow, _Mapping]] = ..., options: _Optional[_Union[PredictOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction", "model", "variant", "prediction_id", "served_version")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    model: _common_pb2.ModelRef
    variant: str
    prediction_id: str
    served_version: ServedVersion
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., variant: _Optional[str] = ..., prediction_id: _Optional[str] = ..., served_version: _Optional[_Union[ServedVersion, _Mapping]] = ...) -> None: ...

class ServedVersion(_message.Message):
    __slots__ = ("name", "reason", "scoring")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    scoring: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., scoring: _Optional[str] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("endpoint_name", "rows", "input_artifact", "options", "request_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    INPUT_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    rows: _containers.RepeatedCompositeFieldContainer[PredictRow]
    input_artifact: _common_pb2.ArtifactRef
    options: PredictOptions
    request_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[PredictRow, _Mapping]]] = ..., input_artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., options: _Optional[_Union[PredictOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("predictions", "output_artifact", "model", "variant", "prediction_id", "served_version")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    output_artifact: _common_pb2.ArtifactRef
    model: _common_pb2.ModelRef
    variant: str
    prediction_id: str
    served_version: ServedVersion
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., output_artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., variant: _Optional[str] = ..., prediction_id: _Optional[str] = ..., served_version: _Optional[_Union[ServedVersion, _Mapping]] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("endpoint_name", "row", "options", "correlation_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    row: PredictRow
    options: PredictOptions
    correlation_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., row: _Optional[_Union[PredictRow, _Mapping]] = ..., options: _Optional[_Union[PredictOptions, _Mapping]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("correlation_id", "prediction", "error", "model", "variant", "prediction_id", "served_version")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    prediction: Prediction
    error: _common_pb2.JobError
    model: _common_pb2.ModelRef
    variant: str
    prediction_id: str
    served_version: ServedVersion
    def __init__(self, correlation_id: _Optional[str] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., variant: _Optional[str] = ..., prediction_id: _Optional[str] = ..., served_version: _Optional[_Union[ServedVersion, _Mapping]] = ...) -> None: ...

class CaptureFile(_message.Message):
    __slots__ = ("artifact", "row_count", "start_time", "end_time", "variant")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    artifact: _common_pb2.ArtifactRef
    row_count: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    variant: str
    def __init__(self, artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., row_count: _Optional[int] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., variant: _Optional[str] = ...) -> None: ...

class ListCaptureFilesRequest(_message.Message):
    __slots__ = ("endpoint_name", "start_time", "end_time", "page")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page: _common_pb2.PageRequest
    def __init__(self, endpoint_name: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListCaptureFilesResponse(_message.Message):
    __slots__ = ("files", "page")
    FILES_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[CaptureFile]
    page: _common_pb2.PageResponse
    def __init__(self, files: _Optional[_Iterable[_Union[CaptureFile, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class MonitoringSpec(_message.Message):
    __slots__ = ("endpoint", "start_time", "end_time", "psi_threshold", "ks_p_value_threshold", "repeat_every", "bad_cases", "min_rows_per_feature")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PSI_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    KS_P_VALUE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REPEAT_EVERY_FIELD_NUMBER: _ClassVar[int]
    BAD_CASES_FIELD_NUMBER: _ClassVar[int]
    MIN_ROWS_PER_FEATURE_FIELD_NUMBER: _ClassVar[int]
    endpoint: _common_pb2.EndpointRef
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    psi_threshold: float
    ks_p_value_threshold: float
    repeat_every: _duration_pb2.Duration
    bad_cases: BadCaseSelection
    min_rows_per_feature: int
    def __init__(self, endpoint: _Optional[_Union[_common_pb2.EndpointRef, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., psi_threshold: _Optional[float] = ..., ks_p_value_threshold: _Optional[float] = ..., repeat_every: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., bad_cases: _Optional[_Union[BadCaseSelection, _Mapping]] = ..., min_rows_per_feature: _Optional[int] = ...) -> None: ...

class FeatureDrift(_message.Message):
    __slots__ = ("feature", "psi", "ks_statistic", "ks_p_value", "drifted", "rows", "not_enough_data")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    KS_STATISTIC_FIELD_NUMBER: _ClassVar[int]
    KS_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NOT_ENOUGH_DATA_FIELD_NUMBER: _ClassVar[int]
    feature: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    drifted: bool
    rows: int
    not_enough_data: bool
    def __init__(self, feature: _Optional[str] = ..., psi: _Optional[float] = ..., ks_statistic: _Optional[float] = ..., ks_p_value: _Optional[float] = ..., drifted: bool = ..., rows: _Optional[int] = ..., not_enough_data: bool = ...) -> None: ...

class DriftReport(_message.Message):
    __slots__ = ("features", "prediction", "rows", "drift_detected", "artifact")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_DETECTED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[FeatureDrift]
    prediction: FeatureDrift
    rows: int
    drift_detected: bool
    artifact: _common_pb2.ArtifactRef
    def __init__(self, features: _Optional[_Iterable[_Union[FeatureDrift, _Mapping]]] = ..., prediction: _Optional[_Union[FeatureDrift, _Mapping]] = ..., rows: _Optional[int] = ..., drift_detected: bool = ..., artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class BadCaseSelection(_message.Message):
    __slots__ = ("reasons", "max_confidence", "min_drift_score", "regression_tolerance", "labeling_project_id", "content_feature", "max_items", "batch_size")
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_DRIFT_SCORE_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    LABELING_PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FEATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    reasons: _containers.RepeatedScalarFieldContainer[BadCaseReason]
    max_confidence: float
    min_drift_score: float
    regression_tolerance: float
    labeling_project_id: str
    content_feature: str
    max_items: int
    batch_size: int
    def __init__(self, reasons: _Optional[_Iterable[_Union[BadCaseReason, str]]] = ..., max_confidence: _Optional[float] = ..., min_drift_score: _Optional[float] = ..., regression_tolerance: _Optional[float] = ..., labeling_project_id: _Optional[str] = ..., content_feature: _Optional[str] = ..., max_items: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class BadCaseReport(_message.Message):
    __slots__ = ("rows_scanned", "selected", "items_added", "items_skipped", "reason_counts", "labeling_project_id", "labeling_retries", "selection")
    class ReasonCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ROWS_SCANNED_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_ADDED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    REASON_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LABELING_PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELING_RETRIES_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    rows_scanned: int
    selected: int
    items_added: int
    items_skipped: int
    reason_counts: _containers.ScalarMap[str, int]
    labeling_project_id: str
    labeling_retries: int
    selection: _common_pb2.ArtifactRef
    def __init__(self, rows_scanned: _Optional[int] = ..., selected: _Optional[int] = ..., items_added: _Optional[int] = ..., items_skipped: _Optional[int] = ..., reason_counts: _Optional[_Mapping[str, int]] = ..., labeling_project_id: _Optional[str] = ..., labeling_retries: _Optional[int] = ..., selection: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class MonitoringJob(_message.Message):
    __slots__ = ("status", "spec", "report", "bad_case_report")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    BAD_CASE_REPORT_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    spec: MonitoringSpec
    report: DriftReport
    bad_case_report: BadCaseReport
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, _Mapping]] = ..., spec: _Optional[_Union[MonitoringSpec, _Mapping]] = ..., report: _Optional[_Union[DriftReport, _Mapping]] = ..., bad_case_report: _Optional[_Union[BadCaseReport, _Mapping]] = ...) -> None: ...

class SubmitMonitoringJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: MonitoringSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[MonitoringSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitMonitoringJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: MonitoringJob
    def __init__(self, job: _Optional[_Union[MonitoringJob, _Mapping]] = ...) -> None: ...

class GetMonitoringJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetMonitoringJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: MonitoringJob
    def __init__(self, job: _Optional[_Union[MonitoringJob, _Mapping]] = ...) -> None: ...

class WatchMonitoringJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchMonitoringJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: MonitoringJob
    def __init__(self, job: _Optional[_Union[MonitoringJob, _Mapping]] = ...) -> None: ...

class CancelMonitoringJobRequest(_message.Message):
    __slots__ = ("job_id", "request_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelMonitoringJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: MonitoringJob
    def __init__(self, job: _Optional[_Union[MonitoringJob, _Mapping]] = ...) -> None: ...

class ListMonitoringJobsRequest(_message.Message):
    __slots__ = ("page", "endpoint_name", "states")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    endpoint_name: str
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., endpoint_name: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ...) -> None: ...

class ListMonitoringJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[MonitoringJob]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[MonitoringJob, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "kind", "endpoint", "feature", "observed", "threshold", "message", "source_id", "create_time", "acknowledged")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: AlertKind
    endpoint: _common_pb2.EndpointRef
    feature: str
    observed: float
    threshold: float
    message: str
    source_id: str
    create_time: _timestamp_pb2.Timestamp
    acknowledged: bool
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., endpoint: _Optional[_Union[_common_pb2.EndpointRef, _Mapping]] = ..., feature: _Optional[str] = ..., observed: _Optional[float] = ..., threshold: _Optional[float] = ..., message: _Optional[str] = ..., source_id: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged: bool = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("page", "endpoint_name", "include_acknowledged")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    endpoint_name: str
    include_acknowledged: bool
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., endpoint_name: _Optional[str] = ..., include_acknowledged: bool = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "page")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    page: _common_pb2.PageResponse
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("alert_id", "request_id")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    request_id: str
    def __init__(self, alert_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class PredictionTarget(_message.Message):
    __slots__ = ("prediction_id", "row")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    row: int
    def __init__(self, prediction_id: _Optional[str] = ..., row: _Optional[int] = ...) -> None: ...

class EntityTarget(_message.Message):
    __slots__ = ("entity_id", "start_time", "end_time")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    entity_id: _common_pb2.Value
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, entity_id: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GroundTruth(_message.Message):
    __slots__ = ("prediction", "entity", "outcome", "event_time")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    prediction: PredictionTarget
    entity: EntityTarget
    outcome: _common_pb2.Value
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, prediction: _Optional[_Union[PredictionTarget, _Mapping]] = ..., entity: _Optional[_Union[EntityTarget, _Mapping]] = ..., outcome: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GroundTruthResult(_message.Message):
    __slots__ = ("index", "status", "matched", "version", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: GroundTruthStatus
    matched: int
    version: int
    error: _common_pb2.JobError
    def __init__(self, index: _Optional[int] = ..., status: _Optional[_Union[GroundTruthStatus, str]] = ..., matched: _Optional[int] = ..., version: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ...) -> None: ...

class AttachGroundTruthRequest(_message.Message):
    __slots__ = ("endpoint_name", "items", "request_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    items: _containers.RepeatedCompositeFieldContainer[GroundTruth]
    request_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[GroundTruth, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AttachGroundTruthResponse(_message.Message):
    __slots__ = ("results", "accepted", "updated", "duplicates", "rejected")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GroundTruthResult]
    accepted: int
    updated: int
    duplicates: int
    rejected: int
    def __init__(self, results: _Optional[_Iterable[_Union[GroundTruthResult, _Mapping]]] = ..., accepted: _Optional[int] = ..., updated: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class AttachGroundTruthStreamRequest(_message.Message):
    __slots__ = ("endpoint_name", "items", "request_id")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    items: _containers.RepeatedCompositeFieldContainer[GroundTruth]
    request_id: str
    def __init__(self, endpoint_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[GroundTruth, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AttachGroundTruthStreamResponse(_message.Message):
    __slots__ = ("accepted", "updated", "duplicates", "rejected", "rejected_items")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    updated: int
    duplicates: int
    rejected: int
    rejected_items: _containers.RepeatedCompositeFieldContainer[GroundTruthResult]
    def __init__(self, accepted: _Optional[int] = ..., updated: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., rejected_items: _Optional[_Iterable[_Union[GroundTruthResult, _Mapping]]] = ...) -> None: ...

class MetricEstimate(_message.Message):
    __slots__ = ("metric", "value", "lower", "upper", "higher_is_better")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    metric: str
    value: float
    lower: float
    upper: float
    higher_is_better: bool
    def __init__(self, metric: _Optional[str] = ..., value: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., higher_is_better: bool = ...) -> None: ...

class PairedComparison(_message.Message):
    __slots__ = ("baseline_variant", "metric", "pairs", "difference", "lower", "upper", "significant", "challenger_better")
    BASELINE_VARIANT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_BETTER_FIELD_NUMBER: _ClassVar[int]
    baseline_variant: str
    metric: str
    pairs: int
    difference: float
    lower: float
    upper: float
    significant: bool
    challenger_better: bool
    def __init__(self, baseline_variant: _Optional[str] = ..., metric: _Optional[str] = ..., pairs: _Optional[int] = ..., difference: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., significant: bool = ..., challenger_better: bool = ...) -> None: ...

class VariantQuality(_message.Message):
    __slots__ = ("variant", "model_version", "labeled", "metrics", "paired", "shadow")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PAIRED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    variant: str
    model_version: int
    labeled: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricEstimate]
    paired: PairedComparison
    shadow: bool
    def __init__(self, variant: _Optional[str] = ..., model_version: _Optional[int] = ..., labeled: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricEstimate, _Mapping]]] = ..., paired: _Optional[_Union[PairedComparison, _Mapping]] = ..., shadow: bool = ...) -> None: ...

class GetModelQualityRequest(_message.Message):
    __slots__ = ("endpoint_name", "start_time", "end_time", "variant", "metric")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    variant: str
    metric: str
    def __init__(self, endpoint_name: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., variant: _Optional[str] = ..., metric: _Optional[str] = ...) -> None: ...

class GetModelQualityResponse(_message.Message):
    __slots__ = ("variants", "start_time", "end_time", "task")
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[VariantQuality]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    task: str
    def __init__(self, variants: _Optional[_Iterable[_Union[VariantQuality, _Mapping]]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., task: _Optional[str] = ...) -> None: ...

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

"""The serving service's domain vocabulary: plain dataclasses and enums that the control plane,
the data plane and monitoring take and return. ``convert.py`` maps them to and from the
protobuf messages of atlas.serving.v1 (and encodes the stored ones as canonical proto JSON).

Durations are float seconds and ``None`` when unset (unset often means "use the default" or
"inherit", so it is not the same as 0); times are aware datetimes. Enum values equal the
proto enum numbers and their names are the proto names without the enum's prefix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from atlas_core.errors import NotFound


class VariantRole(enum.IntEnum):
    UNSPECIFIED = 0
    LIVE = 1
    SHADOW = 2


class FallbackPolicy(enum.IntEnum):
    UNSPECIFIED = 0  # the same as FAIL
    FAIL = 1
    DEFAULTS = 2
    MISSING = 3


class EndpointState(enum.IntEnum):
    UNSPECIFIED = 0
    CREATING = 1
    SERVING = 2
    UPDATING = 3
    ROLLING_BACK = 4
    FAILED = 5
    DELETING = 6


class DeploymentState(enum.IntEnum):
    UNSPECIFIED = 0
    PENDING = 1
    PREPARING = 2
    SHIFTING = 3
    BAKING = 4
    SUCCEEDED = 5
    ROLLING_BACK = 6
    ROLLED_BACK = 7
    FAILED = 8
    CANCELLED = 9


class AlertKind(enum.IntEnum):
    UNSPECIFIED = 0
    FEATURE_DRIFT = 1
    PREDICTION_DRIFT = 2
    ERROR_RATE = 3
    LATENCY = 4
    ROLLBACK = 5
    MODEL_QUALITY = 6


class InsufficientLabelsAction(enum.IntEnum):
    UNSPECIFIED = 0  # the same as HOLD
    HOLD = 1
    ROLL_BACK = 2


class GroundTruthStatus(enum.IntEnum):
    UNSPECIFIED = 0
    ACCEPTED = 1
    UPDATED = 2
    DUPLICATE = 3
    REJECTED = 4


# -- references ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model version by number, by alias, or (neither) the latest."""

    model_name: str
    version: int = 0
    alias: str = ""


@dataclass(frozen=True)
class BundleRef:
    """An object-store artifact as a request names it: sha256 and size may be left out."""

    uri: str
    sha256: str = ""
    size: int = 0


@dataclass(frozen=True)
class EndpointRef:
    endpoint_name: str
    variant_name: str = ""


@dataclass(frozen=True)
class FeatureGroupRef:
    name: str
    version: int = 0


# -- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One input column of a model; ``data_type`` is a common DataType name."""

    name: str
    data_type: str
    nullable: bool = False
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineageParent:
    """``kind`` names the reference (dataset, model, artifact, trial, ...); ``ref`` its fields."""

    role: str
    kind: str
    ref: Mapping[str, Any]


@dataclass
class Lineage:
    operation: str = ""
    parents: list[LineageParent] = field(default_factory=list)
    produced_by: tuple[str, str] | None = None  # (service, job id)


@dataclass
class ModelVersion:
    model_name: str
    version: int
    bundle: BundleRef
    input_schema: list[Column] = field(default_factory=list)
    task_type: str = ""
    classes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None
    has_training_stats: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.model_name, self.version


@dataclass
class Model:
    name: str
    latest_version: int
    aliases: dict[str, int]
    description: str
    create_time: datetime | None


@dataclass
class Registration:
    """What RegisterModelVersion asks for."""

    model_name: str
    bundle: BundleRef
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    parents: list[LineageParent] = field(default_factory=list)


# -- endpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    disabled: bool = False
    max_batch_size: int = 0  # 0: the replica default
    max_delay_s: float | None = None


@dataclass(frozen=True)
class Capacity:
    max_concurrency: int = 0  # 0: the replica default
    max_queue: int = 0
    idle_ttl_s: float | None = None
    warm: bool = False
    memory_budget_bytes: int = 0


@dataclass(frozen=True)
class FeatureLookup:
    feature_groups: tuple[FeatureGroupRef, ...] = ()
    feature_mapping: Mapping[str, str] = field(default_factory=dict)  # input -> group.feature
    timeout_s: float | None = None
    fallback: FallbackPolicy = FallbackPolicy.UNSPECIFIED


@dataclass(frozen=True)
class Capture:
    enabled: bool = False
    sample_fraction: float = 0.0
    flush_rows: int = 0
    flush_interval_s: float | None = None


@dataclass(frozen=True)
class QualityThreshold:
    metric: str
    threshold: float


@dataclass(frozen=True)
class QualityConfig:
    """Prediction recording for ground truth, and quality alerts over ``window_s``."""

    enabled: bool = False
    sample_fraction: float = 0.0  # 0: every prediction
    entity_feature: str = ""
    thresholds: tuple[QualityThreshold, ...] = ()
    window_s: float | None = None  # None: one hour
    min_labeled: int = 0  # 0: 30


@dataclass(frozen=True)
class Variant:
    name: str
    model: ModelRef
    role: VariantRole = VariantRole.UNSPECIFIED
    weight: float = 0.0
    shadow_fraction: float = 0.0
    replicas: int = 0
    batching: Batching = field(default_factory=Batching)
    resolved_version: int = 0
    capacity: Capacity = field(default_factory=Capacity)

    @property
    def shadow(self) -> bool:
        return self.role == VariantRole.SHADOW


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    variants: tuple[Variant, ...] = ()
    capacity: Capacity = field(default_factory=Capacity)
    feature_lookup: FeatureLookup = field(default_factory=FeatureLookup)
    capture: Capture = field(default_factory=Capture)
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    quality: QualityConfig = field(default_factory=QualityConfig)


@dataclass
class Endpoint:
    spec: EndpointSpec
    state: EndpointState = EndpointState.SERVING
    active_deployment_id: str = ""
    last_deployment_id: str = ""
    etag: str = ""
    create_time: datetime | None = None
    update_time: datetime | None = None


@dataclass(frozen=True)
class EndpointUpdate:
    """UpdateEndpoint: None leaves a part as it is."""

    name: str
    capacity: Capacity | None = None
    feature_lookup: FeatureLookup | None = None
    capture: Capture | None = None
    description: str = ""
    etag: str = ""
    quality: QualityConfig | None = None


# -- deployments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficPolicy:
    """``kind`` is all_at_once (also when empty), canary, linear, blue_green or
    promote_if_better."""

    kind: str = ""
    canary_percent: float = 0.0
    step_percent: float = 0.0
    step_interval_s: float = 0.0
    bake_time_s: float = 0.0  # canary and blue_green
    final_bake_time_s: float | None = None
    # promote_if_better
    metric: str = ""
    min_labeled: int = 0
    max_duration_s: float | None = None
    shadow_fraction: float = 0.0


@dataclass(frozen=True)
class QualityGate:
    metric: str = ""  # empty: the task's default metric
    min_labeled: int = 0  # 0: 50
    max_drop: float = 0.0
    on_insufficient_labels: InsufficientLabelsAction = InsufficientLabelsAction.UNSPECIFIED


@dataclass(frozen=True)
class Alarms:
    max_error_rate: float = 0.0
    max_p99_latency_s: float | None = None
    window_s: float | None = None
    min_requests: int = 0
    disable_auto_rollback: bool = False
    quality_gate: QualityGate | None = None


@dataclass(frozen=True)
class AlarmEvent:
    variant: str
    metric: str
    observed: float
    threshold: float
    fire_time: datetime | None = None


@dataclass(frozen=True)
class JobError:
    code: str
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    deployment_id: str
    endpoint_name: str
    state: DeploymentState
    target_variants: list[Variant] = field(default_factory=list)
    previous_variants: list[Variant] = field(default_factory=list)
    policy: TrafficPolicy = field(default_factory=TrafficPolicy)
    alarms: Alarms = field(default_factory=Alarms)
    traffic: dict[str, float] = field(default_factory=dict)
    step: int = 0
    total_steps: int = 0
    alarm_events: list[AlarmEvent] = field(default_factory=list)
    error: JobError | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None
    request_id: str = ""


@dataclass(frozen=True)
class DeploymentRequest:
    """SubmitDeployment."""

    endpoint_name: str
    variants: tuple[Variant, ...]
    policy: TrafficPolicy = field(default_factory=TrafficPolicy)
    alarms: Alarms = field(default_factory=Alarms)
    request_id: str = ""


# -- predictions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictOptions:
    explain: bool = False
    target_variant: str = ""
    return_all_scores: bool = False


@dataclass
class Row:
    """One row to predict: inline feature values, or an entity id whose online features are
    looked up (``overrides`` replace some of them)."""

    features: dict[str, Any] | None = None
    entity_id: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)


# -- monitoring ----------------------------------------------------------------------------


@dataclass
class Alert:
    alert_id: str
    kind: AlertKind
    endpoint: EndpointRef
    observed: float = 0.0
    threshold: float = 0.0
    message: str = ""
    source_id: str = ""
    feature: str = ""
    create_time: datetime | None = None
    acknowledged: bool = False


@dataclass(frozen=True)
class CaptureFile:
    uri: str
    sha256: str
    size: int
    row_count: int
    start_us: int
    end_us: int
    variant: str


class BadCaseReason(enum.IntEnum):
    UNSPECIFIED = 0
    LOW_CONFIDENCE = 1
    HIGH_DRIFT = 2
    SHADOW_DISAGREEMENT = 3
    WRONG_BY_GROUND_TRUTH = 4


@dataclass(frozen=True)
class BadCaseSelection:
    """Which captured requests are bad cases, and the labeling project they go to
    (0 thresholds and limits mean the defaults)."""

    reasons: tuple[BadCaseReason, ...]
    labeling_project_id: str = ""
    max_confidence: float = 0.0
    min_drift_score: float = 0.0
    regression_tolerance: float = 0.0
    content_feature: str = ""
    max_items: int = 0
    batch_size: int = 0


@dataclass(frozen=True)
class MonitoringSpec:
    endpoint: EndpointRef
    start_us: int | None = None
    end_us: int | None = None
    psi_threshold: float = 0.0
    ks_p_value_threshold: float = 0.0
    repeat_every_s: float | None = None
    # Set: a bad-case job instead of a drift report.
    bad_cases: BadCaseSelection | None = None
    min_rows_per_feature: int = 0


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    drifted: bool
    rows: int = 0
    not_enough_data: bool = False


@dataclass
class DriftReport:
    rows: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: FeatureDrift | None = None
    drift_detected: bool = False


@dataclass
class VariantStats:
    variant: str
    model_version: int
    qps: float
    p50_ms: float
    p99_ms: float
    error_rate: float
    rejected: int
    mean_batch_size: float
    loaded_replicas: int
    cold_starts: int
    last_cold_start_s: float
    traffic_percent: float
    queue_depth: int = 0
    shadow: ShadowComparison | None = None
    quality: VariantQuality | None = None


@dataclass(frozen=True)
class ShadowComparison:
    compared: int
    label_agreement: float
    mean_abs_score_diff: float
    p50_ms: float
    p99_ms: float
    errors: int


# -- ground truth and model quality ---------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """A true outcome for one prediction (``prediction_id``, ``row``) or for every prediction
    of ``entity_id`` with a time in [start_us, end_us)."""

    outcome: Any
    prediction_id: str = ""
    row: int = 0
    entity_id: Any = None
    start_us: int | None = None
    end_us: int | None = None
    event_us: int | None = None

    @property
    def by_entity(self) -> bool:
        return self.entity_id is not None


@dataclass
class GroundTruthResult:
    index: int
    status: GroundTruthStatus
    matched: int = 0
    version: int = 0
    error: JobError | None = None


@dataclass
class GroundTruthSummary:
    results: list[GroundTruthResult] = field(default_factory=list)

    def count(self, status: GroundTruthStatus) -> int:
        return sum(1 for r in self.results if r.status == status)


@dataclass(frozen=True)
class MetricEstimate:
    metric: str
    value: float
    lower: float
    upper: float
    higher_is_better: bool


@dataclass(frozen=True)
class PairedComparison:
    baseline_variant: str
    metric: str
    pairs: int
    difference: float
    lower: float
    upper: float
    significant: bool
    challenger_better: bool


@dataclass
class VariantQuality:
    variant: str
    model_version: int
    labeled: int
    metrics: list[MetricEstimate] = field(default_factory=list)
    paired: PairedComparison | None = None
    shadow: bool = False


@dataclass
class QualityReport:
    task: str
    start_us: int
    end_us: int
    variants: list[VariantQuality] = field(default_factory=list)


def endpoint_not_found(name: str) -> NotFound:
    """The one refusal for an endpoint name that names none, with where to look."""
    return NotFound(
        f"endpoint {name} does not exist (ListEndpoints / `atlas deploy status` lists them)",
        reason="ENDPOINT_NOT_FOUND",
    )

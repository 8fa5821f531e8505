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

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_TYPE_UNSPECIFIED: _ClassVar[TaskType]
    TASK_TYPE_AUTO: _ClassVar[TaskType]
    TASK_TYPE_BINARY: _ClassVar[TaskType]
    TASK_TYPE_MULTICLASS: _ClassVar[TaskType]
    TASK_TYPE_REGRESSION: _ClassVar[TaskType]

class ModelFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FAMILY_UNSPECIFIED: _ClassVar[ModelFamily]
    MODEL_FAMILY_XGBOOST: _ClassVar[ModelFamily]
    MODEL_FAMILY_LIGHTGBM: _ClassVar[ModelFamily]
    MODEL_FAMILY_LINEAR: _ClassVar[ModelFamily]
    MODEL_FAMILY_RANDOM_FOREST: _ClassVar[ModelFamily]
    MODEL_FAMILY_EXTRA_TREES: _ClassVar[ModelFamily]
    MODEL_FAMILY_MLP: _ClassVar[ModelFamily]

class SearchStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_STRATEGY_UNSPECIFIED: _ClassVar[SearchStrategy]
    SEARCH_STRATEGY_HYPERBAND_TPE: _ClassVar[SearchStrategy]
    SEARCH_STRATEGY_TPE: _ClassVar[SearchStrategy]
    SEARCH_STRATEGY_RANDOM: _ClassVar[SearchStrategy]

class ValidationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALIDATION_METHOD_UNSPECIFIED: _ClassVar[ValidationMethod]
    VALIDATION_METHOD_AUTO: _ClassVar[ValidationMethod]
    VALIDATION_METHOD_KFOLD: _ClassVar[ValidationMethod]
    VALIDATION_METHOD_HOLDOUT: _ClassVar[ValidationMethod]

class StackingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STACKING_MODE_UNSPECIFIED: _ClassVar[StackingMode]
    STACKING_MODE_AUTO: _ClassVar[StackingMode]
    STACKING_MODE_OFF: _ClassVar[StackingMode]
    STACKING_MODE_ON: _ClassVar[StackingMode]

class WarmStartMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WARM_START_MODE_UNSPECIFIED: _ClassVar[WarmStartMode]
    WARM_START_MODE_AUTO: _ClassVar[WarmStartMode]
    WARM_START_MODE_OFF: _ClassVar[WarmStartMode]
    WARM_START_MODE_EXPLICIT: _ClassVar[WarmStartMode]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_RUNNING: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETE: _ClassVar[TrialState]
    TRIAL_STATE_PRUNED: _ClassVar[TrialState]
    TRIAL_STATE_FAILED: _ClassVar[TrialState]
    TRIAL_STATE_WAITING: _ClassVar[TrialState]

class RegistrationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGISTRATION_STATE_UNSPECIFIED: _ClassVar[RegistrationState]
    REGISTRATION_STATE_REGISTERED: _ClassVar[RegistrationState]
    REGISTRATION_STATE_FAILED: _ClassVar[RegistrationState]

class TrainingEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_EVENT_TYPE_UNSPECIFIED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_STATUS: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_TRIAL_STARTED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_TRIAL_FINISHED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_TRIAL_PRUNED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_TRIAL_FAILED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_NEW_BEST: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_EPOCH_FINISHED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_CHECKPOINT_SAVED: _ClassVar[TrainingEventType]
    TRAINING_EVENT_TYPE_HEARTBEAT: _ClassVar[TrainingEventType]
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_AUTO: TaskType
TASK_TYPE_BINARY: TaskType
TASK_TYPE_MULTICLASS: TaskType
TASK_TYPE_REGRESSION: TaskType
MODEL_FAMILY_UNSPECIFIED: ModelFamily
MODEL_FAMILY_XGBOOST: ModelFamily
MODEL_FAMILY_LIGHTGBM: ModelFamily
MODEL_FAMILY_LINEAR: ModelFamily
MODEL_FAMILY_RANDOM_FOREST: ModelFamily
MODEL_FAMILY_EXTRA_TREES: ModelFamily
MODEL_FAMILY_MLP: ModelFamily
SEARCH_STRATEGY_UNSPECIFIED: SearchStrategy
SEARCH_STRATEGY_HYPERBAND_TPE: SearchStrategy
SEARCH_STRATEGY_TPE: SearchStrategy
SEARCH_STRATEGY_RANDOM: SearchStrategy
VALIDATION_METHOD_UNSPECIFIED: ValidationMethod
VALIDATION_METHOD_AUTO: ValidationMethod
VALIDATION_METHOD_KFOLD: ValidationMethod
VALIDATION_METHOD_HOLDOUT: ValidationMethod
STACKING_MODE_UNSPECIFIED: StackingMode
STACKING_MODE_AUTO: StackingMode
STACKING_MODE_OFF: StackingMode
STACKING_MODE_ON: StackingMode
WARM_START_MODE_UNSPECIFIED: WarmStartMode
WARM_START_MODE_AUTO: WarmStartMode
WARM_START_MODE_OFF: WarmStartMode
WARM_START_MODE_EXPLICIT: WarmStartMode
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_COMPLETE: TrialState
TRIAL_STATE_PRUNED: TrialState
TRIAL_STATE_FAILED: TrialState
TRIAL_STATE_WAITING: TrialState
REGISTRATION_STATE_UNSPECIFIED: RegistrationState
REGISTRATION_STATE_REGISTERED: RegistrationState
REGISTRATION_STATE_FAILED: RegistrationState
TRAINING_EVENT_TYPE_UNSPECIFIED: TrainingEventType
TRAINING_EVENT_TYPE_STATUS: TrainingEventType
TRAINING_EVENT_TYPE_TRIAL_STARTED: TrainingEventType
TRAINING_EVENT_TYPE_TRIAL_FINISHED: TrainingEventType
TRAINING_EVENT_TYPE_TRIAL_PRUNED: TrainingEventType
TRAINING_EVENT_TYPE_TRIAL_FAILED: TrainingEventType
TRAINING_EVENT_TYPE_NEW_BEST: TrainingEventType
TRAINING_EVENT_TYPE_EPOCH_FINISHED: TrainingEventType
TRAINING_EVENT_TYPE_CHECKPOINT_SAVED: TrainingEventType
TRAINING_EVENT_TYPE_HEARTBEAT: TrainingEventType

class Budget(_message.Message):
    __slots__ = ("wall_time", "max_trials")
    WALL_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    wall_time: _duration_pb2.Duration
    max_trials: int
    def __init__(self, wall_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., max_trials: _Optional[int] = ...) -> None: ...

class SearchSpaceOptions(_message.Message):
    __slots__ = ("model_families", "allow_feature_crosses", "allow_feature_selection", "disable_ensemble", "max_ensemble_size", "fixed_params")
    MODEL_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FEATURE_CROSSES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FEATURE_SELECTION_FIELD_NUMBER: _ClassVar[int]
    DISABLE_ENSEMBLE_FIELD_NUMBER: _ClassVar[int]
    MAX_ENSEMBLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FIXED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    model_families: _containers.RepeatedScalarFieldContainer[ModelFamily]
    allow_feature_crosses: bool
    allow_feature_selection: bool
    disable_ensemble: bool
    max_ensemble_size: int
    fixed_params: _struct_pb2.Struct
    def __init__(self, model_families: _Optional[_Iterable[_Union[ModelFamily, str]]] = ..., allow_feature_crosses: bool = ..., allow_feature_selection: bool = ..., disable_ensemble: bool = ..., max_ensemble_size: _Optional[int] = ..., fixed_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AutoMlSpec(_message.Message):
    __slots__ = ("strategy", "search_space", "validation", "folds", "holdout_fraction", "warm_start", "warm_start_jobs", "warm_start_k", "parallel_trials", "study_name", "max_row_latency_ms", "column_roles", "min_batch_rows_per_s", "stacking", "stack_levels")
    class ColumnRolesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    WARM_START_FIELD_NUMBER: _ClassVar[int]
    WARM_START_JOBS_FIELD_NUMBER: _ClassVar[int]
    WARM_START_K_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TRIALS_FIELD_NUMBER: _ClassVar[int]
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_ROW_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COLUMN_ROLES_FIELD_NUMBER: _ClassVar[int]
    MIN_BATCH_ROWS_PER_S_FIELD_NUMBER: _ClassVar[int]
    STACKING_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVELS_FIELD_NUMBER: _ClassVar[int]
    strategy: SearchStrategy
    search_space: SearchSpaceOptions
    validation: ValidationMethod
    folds: int
    holdout_fraction: float
    warm_start: WarmStartMode
    warm_start_jobs: _containers.RepeatedScalarFieldContainer[str]
    warm_start_k: int
    parallel_trials: int
    study_name: str
    max_row_latency_ms: float
    column_roles: _containers.ScalarMap[str, str]
    min_batch_rows_per_s: float
    stacking: StackingMode
    stack_levels: int
    def __init__(self, strategy: _Optional[_Union[SearchStrategy, str]] = ..., search_space: _Optional[_Union[SearchSpaceOptions, _Mapping]] = ..., validation: _Optional[_Union[ValidationMethod, str]] = ..., folds: _Optional[int] = ..., holdout_fraction: _Optional[float] = ..., warm_start: _Optional[_Union[WarmStartMode, str]] = ..., warm_start_jobs: _Optional[_Iterable[str]] = ..., warm_start_k: _Optional[int] = ..., parallel_trials: _Optional[int] = ..., study_name: _Optional[str] = ..., max_row_latency_ms: _Optional[float] = ..., column_roles: _Optional[_Mapping[str, str]] = ..., min_batch_rows_per_s: _Optional[float] = ..., stacking: _Optional[_Union[StackingMode, str]] = ..., stack_levels: _Optional[int] = ...) -> None: ...

class NasSpec(_message.Message):
    __slots__ = ("max_layers", "widths", "activations", "max_candidates", "kernel_sizes", "max_parameters", "max_macs", "population", "generations", "fine_tune_epochs")
    MAX_LAYERS_FIELD_NUMBER: _ClassVar[int]
    WIDTHS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SIZES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MAX_MACS_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNE_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    max_layers: int
    widths: _containers.RepeatedScalarFieldContainer[int]
    activations: _containers.RepeatedScalarFieldContainer[str]
    max_candidates: int
    kernel_sizes: _containers.RepeatedScalarFieldContainer[int]
    max_parameters: int
    max_macs: int
    population: int
    generations: int
    fine_tune_epochs: int
    def __init__(self, max_layers: _Optional[int] = ..., widths: _Optional[_Iterable[int]] = ..., activations: _Optional[_Iterable[str]] = ..., max_candidates: _Optional[int] = ..., kernel_sizes: _Optional[_Iterable[int]] = ..., max_parameters: _Optional[int] = ..., max_macs: _Optional[int] = ..., population: _Optional[int] = ..., generations: _Optional[int] = ..., fine_tune_epochs: _Optional[int] = ...) -> None: ...

class NasCandidate(_message.Message):
    __slots__ = ("architecture", "description", "accuracy", "parameters", "macs")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    architecture: _struct_pb2.Struct
    description: str
    accuracy: float
    parameters: int
    macs: int
    def __init__(self, architecture: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., description: _Optional[str] = ..., accuracy: _Optional[float] = ..., parameters: _Optional[int] = ..., macs: _Optional[int] = ...) -> None: ...

class NasResult(_message.Message):
    __slots__ = ("architectures_evaluated", "generations", "pareto_front", "best", "fine_tuned_accuracy", "supernet_parameters", "max_parameters", "max_macs", "supernet_time", "search_time")
    ARCHITECTURES_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    PARETO_FRONT_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SUPERNET_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MAX_MACS_FIELD_NUMBER: _ClassVar[int]
    SUPERNET_TIME_FIELD_NUMBER: _ClassVar[int]
    SEARCH_TIME_FIELD_NUMBER: _ClassVar[int]
    architectures_evaluated: int
    generations: int
    pareto_front: _containers.RepeatedCompositeFieldContainer[NasCandidate]
    best: NasCandidate
    fine_tuned_accuracy: float
    supernet_parameters: int
    max_parameters: int
    max_macs: int
    supernet_time: _duration_pb2.Duration
    search_time: _duration_pb2.Duration
    def __init__(self, architectures_evaluated: _Optional[int] = ..., generations: _Optional[int] = ..., pareto_front: _Optional[_Iterable[_Union[NasCandidate, _Mapping]]] = ..., best: _Optional[_Union[NasCandidate, _Mapping]] = ..., fine_tuned_accuracy: _Optional[float] = ..., supernet_parameters: _Optional[int] = ..., max_parameters: _Optional[int] = ..., max_macs: _Optional[int] = ..., supernet_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., search_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DeepLearningSpec(_message.Message):
    __slots__ = ("architecture", "params", "workers", "epochs", "batch_size", "checkpoint_every_epochs", "resume_from", "nas", "validation_fraction", "max_restarts")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    NAS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    params: _struct_pb2.Struct
    workers: int
    epochs: int
    batch_size: int
    checkpoint_every_epochs: int
    resume_from: _common_pb2.ArtifactRef
    nas: NasSpec
    validation_fraction: float
    max_restarts: int
    def __init__(self, architecture: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., workers: _Optional[int] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., checkpoint_every_epochs: _Optional[int] = ..., resume_from: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., nas: _Optional[_Union[NasSpec, _Mapping]] = ..., validation_fraction: _Optional[float] = ..., max_restarts: _Optional[int] = ...) -> None: ...

class EpochMetrics(_message.Message):
    __slots__ = ("epoch", "train_loss", "validation_loss", "validation_accuracy", "duration")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    duration: _duration_pb2.Duration
    def __init__(self, epoch: _Optional[int] = ..., train_loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ActivationMemory(_message.Message):
    __slots__ = ("peak_bytes_with_checkpointing", "peak_bytes_without_checkpointing", "checkpointing", "method", "step_time_with_checkpointing", "step_time_without_checkpointing", "checkpointing_mode")
    PEAK_BYTES_WITH_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    PEAK_BYTES_WITHOUT_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STEP_TIME_WITH_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    STEP_TIME_WITHOUT_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTING_MODE_FIELD_NUMBER: _ClassVar[int]
    peak_bytes_with_checkpointing: int
    peak_bytes_without_checkpointing: int
    checkpointing: bool
    method: str
    step_time_with_checkpointing: _duration_pb2.Duration
    step_time_without_checkpointing: _duration_pb2.Duration
    checkpointing_mode: str
    def __init__(self, peak_bytes_with_checkpointing: _Optional[int] = ..., peak_bytes_without_checkpointing: _Optional[int] = ..., checkpointing: bool = ..., method: _Optional[str] = ..., step_time_with_checkpointing: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., step_time_without_checkpointing: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., checkpointing_mode: _Optional[str] = ...) -> None: ...

class ClassifierShard(_message.Message):
    __slots__ = ("rank", "class_start", "class_stop", "params")
    RANK_FIELD_NUMBER: _ClassVar[int]
    CLASS_START_FIELD_NUMBER: _ClassVar[int]
    CLASS_STOP_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    class_start: int
    class_stop: int
    params: int
    def __init__(self, rank: _Optional[int] = ..., class_start: _Optional[int] = ..., class_stop: _Optional[int] = ..., params: _Optional[int] = ...) -> None: ...

class DeepLearningResult(_message.Message):
    __slots__ = ("architecture", "parameters", "workers", "epochs", "resumed_from_epoch", "restarts", "activation_memory", "torchrun_command", "rendezvous_config", "nas", "classifier_shards")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_EPOCH_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_MEMORY_FIELD_NUMBER: _ClassVar[int]
    TORCHRUN_COMMAND_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_CONFIG_FIELD_NUMBER: _ClassVar[int]
    NAS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_SHARDS_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    parameters: int
    workers: int
    epochs: _containers.RepeatedCompositeFieldContainer[EpochMetrics]
    resumed_from_epoch: int
    restarts: int
    activation_memory: ActivationMemory
    torchrun_command: str
    rendezvous_config: str
    nas: NasResult
    classifier_shards: _containers.RepeatedCompositeFieldContainer[ClassifierShard]
    def __init__(self, architecture: _Optional[str] = ..., parameters: _Optional[int] = ..., workers: _Optional[int] = ..., epochs: _Optional[_Iterable[_Union[EpochMetrics, _Mapping]]] = ..., resumed_from_epoch: _Optional[int] = ..., restarts: _Optional[int] = ..., activation_memory: _Optional[_Union[ActivationMemory, _Mapping]] = ..., torchrun_command: _Optional[str] = ..., rendezvous_config: _Optional[str] = ..., nas: _Optional[_Union[NasResult, _Mapping]] = ..., classifier_shards: _Optional[_Iterable[_Union[ClassifierShard, _Mapping]]] = ...) -> None: ...

class TrainingJobSpec(_message.Message):
    __slots__ = ("dataset", "dataset_artifact", "target_column", "task_type", "metric", "budget", "resources", "seed", "ignore_columns", "weight_column", "group_column", "bias_facet_columns", "automl", "deep_learning", "display_name", "labels", "replaces_model", "register")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DATASET_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IGNORE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_COLUMN_FIELD_NUMBER: _ClassVar[int]
    GROUP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    BIAS_FACET_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    AUTOML_FIELD_NUMBER: _ClassVar[int]
    DEEP_LEARNING_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REPLACES_MODEL_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.DatasetRef
    dataset_artifact: _common_pb2.ArtifactRef
    target_column: str
    task_type: TaskType
    metric: str
    budget: Budget
    resources: _common_pb2.ResourceRequest
    seed: int
    ignore_columns: _containers.RepeatedScalarFieldContainer[str]
    weight_column: str
    group_column: str
    bias_facet_columns: _containers.RepeatedScalarFieldContainer[str]
    automl: AutoMlSpec
    deep_learning: DeepLearningSpec
    display_name: str
    labels: _containers.ScalarMap[str, str]
    replaces_model: _common_pb2.ModelRef
    register: RegisterModelOptions
    def __init__(self, dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., dataset_artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., target_column: _Optional[str] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., metric: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ..., seed: _Optional[int] = ..., ignore_columns: _Optional[_Iterable[str]] = ..., weight_column: _Optional[str] = ..., group_column: _Optional[str] = ..., bias_facet_columns: _Optional[_Iterable[str]] = ..., automl: _Optional[_Union[AutoMlSpec, _Mapping]] = ..., deep_learning: _Optional[_Union[DeepLearningSpec, _Mapping]] = ..., display_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., replaces_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., register: _Optional[_Union[RegisterModelOptions, _Mapping]] = ...) -> None: ...

class RegisterModelOptions(_message.Message):
    __slots__ = ("model_name", "alias", "description")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    description: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("number", "state", "pipeline", "model_family", "params", "score", "score_std", "metrics", "fit_time", "predict_time_per_1k", "fidelity", "origin", "error", "bundle", "ensemble_weights", "start_time", "end_time", "gpu_utilization_percent", "row_latency", "device", "gpu_memory_peak_bytes", "batch_rows_per_s", "stack_level")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EnsembleWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_STD_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FIT_TIME_FIELD_NUMBER: _ClassVar[int]
    PREDICT_TIME_PER_1K_FIELD_NUMBER: _ClassVar[int]
    FIDELITY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ROW_LATENCY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_PER_S_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    number: int
    state: TrialState
    pipeline: str
    model_family: ModelFamily
    params: _struct_pb2.Struct
    score: float
    score_std: float
    metrics: _containers.ScalarMap[str, float]
    fit_time: _duration_pb2.Duration
    predict_time_per_1k: _duration_pb2.Duration
    fidelity: float
    origin: str
    error: str
    bundle: _common_pb2.ArtifactRef
    ensemble_weights: _containers.ScalarMap[int, float]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    gpu_utilization_percent: float
    row_latency: _duration_pb2.Duration
    device: str
    gpu_memory_peak_bytes: int
    batch_rows_per_s: float
    stack_level: int
    def __init__(self, number: _Optional[int] = ..., state: _Optional[_Union[TrialState, str]] = ..., pipeline: _Optional[str] = ..., model_family: _Optional[_Union[ModelFamily, str]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., score: _Optional[float] = ..., score_std: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., fit_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., predict_time_per_1k: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., fidelity: _Optional[float] = ..., origin: _Optional[str] = ..., error: _Optional[str] = ..., bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., ensemble_weights: _Optional[_Mapping[int, float]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., gpu_utilization_percent: _Optional[float] = ..., row_latency: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., device: _Optional[str] = ..., gpu_memory_peak_bytes: _Optional[int] = ..., batch_rows_per_s: _Optional[float] = ..., stack_level: _Optional[int] = ...) -> None: ...

class ModelVersionEstimate(_message.Message):
    __slots__ = ("name", "description", "score", "models", "row_latency", "batch_rows_per_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ROW_LATENCY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_PER_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    score: float
    models: int
    row_latency: _duration_pb2.Duration
    batch_rows_per_s: float
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., score: _Optional[float] = ..., models: _Optional[int] = ..., row_latency: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., batch_rows_per_s: _Optional[float] = ...) -> None: ...

class WarmStartPrior(_message.Message):
    __slots__ = ("source_job_id", "source_dataset", "reason", "distance", "configs_enqueued", "best_rank", "trials_learned_from", "rank_agreement")
    SOURCE_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DATASET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    BEST_RANK_FIELD_NUMBER: _ClassVar[int]
    TRIALS_LEARNED_FROM_FIELD_NUMBER: _ClassVar[int]
    RANK_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    source_job_id: str
    source_dataset: _common_pb2.DatasetRef
    reason: str
    distance: float
    configs_enqueued: int
    best_rank: int
    trials_learned_from: int
    rank_agreement: float
    def __init__(self, source_job_id: _Optional[str] = ..., source_dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., reason: _Optional[str] = ..., distance: _Optional[float] = ..., configs_enqueued: _Optional[int] = ..., best_rank: _Optional[int] = ..., trials_learned_from: _Optional[int] = ..., rank_agreement: _Optional[float] = ...) -> None: ...

class TrainingResult(_message.Message):
    __slots__ = ("best", "model_bundle", "task_type", "metric", "higher_is_better", "trials_complete", "trials_pruned", "trials_failed", "trials_interrupted", "lineage", "priors", "checkpoints", "registration", "deep_learning", "model_versions")
    BEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    TRIALS_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_PRUNED_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FAILED_FIELD_NUMBER: _ClassVar[int]
    TRIALS_INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    PRIORS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    DEEP_LEARNING_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    best: Trial
    model_bundle: _common_pb2.ArtifactRef
    task_type: TaskType
    metric: str
    higher_is_better: bool
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    trials_interrupted: int
    lineage: _common_pb2.Lineage
    priors: _containers.RepeatedCompositeFieldContainer[WarmStartPrior]
    checkpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    registration: ModelRegistration
    deep_learning: DeepLearningResult
    model_versions: _containers.RepeatedCompositeFieldContainer[ModelVersionEstimate]
    def __init__(self, best: _Optional[_Union[Trial, _Mapping]] = ..., model_bundle: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., metric: _Optional[str] = ..., higher_is_better: bool = ..., trials_complete: _Optional[int] = ..., trials_pruned: _Optional[int] = ..., trials_failed: _Optional[int] = ..., trials_interrupted: _Optional[int] = ..., lineage: _Optional[_Union[_common_pb2.Lineage, _Mapping]] = ..., priors: _Optional[_Iterable[_Union[WarmStartPrior, _Mapping]]] = ..., checkpoints: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., registration: _Optional[_Union[ModelRegistration, _Mapping]] = ..., deep_learning: _Optional[_Union[DeepLearningResult, _Mapping]] = ..., model_versions: _Optional[_Iterable[_Union[ModelVersionEstimate, _Mapping]]] = ...) -> None: ...

class ModelRegistration(_message.Message):
    __slots__ = ("state", "model_version", "alias", "attempts", "error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    state: RegistrationState
    model_version: _common_pb2.ModelRef
    alias: str
    attempts: int
    error: str
    def __init__(self, state: _Optional[_Union[RegistrationState, str]] = ..., model_version: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., alias: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("status", "spec", "study_name", "best_so_far", "result", "elapsed", "remaining")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    BEST_SO_FAR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    spec: TrainingJobSpec
    study_name: str
    best_so_far: Trial
    result: TrainingResult
    elapsed: _duration_pb2.Duration
    remaining: _duration_pb2.Duration
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, _Mapping]] = ..., spec: _Optional[_Union[TrainingJobSpec, _Mapping]] = ..., study_name: _Optional[str] = ..., best_so_far: _Optional[_Union[Trial, _Mapping]] = ..., result: _Optional[_Union[TrainingResult, _Mapping]] = ..., elapsed: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., remaining: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SubmitTrainingJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: TrainingJobSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[TrainingJobSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class WatchTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchTrainingJobResponse(_message.Message):
    __slots__ = ("event_type", "status", "trial", "best_so_far", "elapsed", "remaining", "epoch", "epoch_metrics", "event_time")
    class EpochMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    BEST_SO_FAR_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCH_METRICS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    event_type: TrainingEventType
    status: _common_pb2.JobStatus
    trial: Trial
    best_so_far: Trial
    elapsed: _duration_pb2.Duration
    remaining: _duration_pb2.Duration
    epoch: int
    epoch_metrics: _containers.ScalarMap[str, float]
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, event_type: _Optional[_Union[TrainingEventType, str]] = ..., status: _Optional[_Union[_common_pb2.JobStatus, _Mapping]] = ..., trial: _Optional[_Union[Trial, _Mapping]] = ..., best_so_far: _Optional[_Union[Trial, _Mapping]] = ..., elapsed: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., remaining: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., epoch: _Optional[int] = ..., epoch_metrics: _Optional[_Mapping[str, float]] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelTrainingJobRequest(_message.Message):
    __slots__ = ("job_id", "request_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class ListTrainingJobsRequest(_message.Message):
    __slots__ = ("page", "states", "dataset", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    dataset: _common_pb2.DatasetRef
    labels: _containers.ScalarMap[str, str]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListTrainingJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ("job_id", "page")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page: _common_pb2.PageRequest
    def __init__(self, job_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("entries", "metric", "higher_is_better", "page")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Trial]
    metric: str
    higher_is_better: bool
    page: _common_pb2.PageResponse
    def __init__(self, entries: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., metric: _Optional[str] = ..., higher_is_better: bool = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class ListTrialsRequest(_message.Message):
    __slots__ = ("job_id", "states", "page")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    states: _containers.RepeatedScalarFieldContainer[TrialState]
    page: _common_pb2.PageRequest
    def __init__(self, job_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[TrialState, str]]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListTrialsResponse(_message.Message):
    __slots__ = ("trials", "page")
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    page: _common_pb2.PageResponse
    def __init__(self, trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class FeatureImportance(_message.Message):
    __slots__ = ("feature", "importance", "importance_std")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_STD_FIELD_NUMBER: _ClassVar[int]
    feature: str
    importance: float
    importance_std: float
    def __init__(self, feature: _Optional[str] = ..., importance: _Optional[float] = ..., importance_std: _Optional[float] = ...) -> None: ...

class BiasMetrics(_message.Message):
    __slots__ = ("facet_column", "facet_value", "class_imbalance", "difference_in_proportions", "kl_divergence", "js_divergence", "ks_distance", "total_variation", "rows")
    FACET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FACET_VALUE_FIELD_NUMBER: _ClassVar[int]
    CLASS_IMBALANCE_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_IN_PROPORTIONS_FIELD_NUMBER: _ClassVar[int]
    KL_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    JS_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    KS_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VARIATION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    facet_column: str
    facet_value: str
    class_imbalance: float
    difference_in_proportions: float
    kl_divergence: float
    js_divergence: float
    ks_distance: float
    total_variation: float
    rows: int
    def __init__(self, facet_column: _Optional[str] = ..., facet_value: _Optional[str] = ..., class_imbalance: _Optional[float] = ..., difference_in_proportions: _Optional[float] = ..., kl_divergence: _Optional[float] = ..., js_divergence: _Optional[float] = ..., ks_distance: _Optional[float] = ..., total_variation: _Optional[float] = ..., rows: _Optional[int] = ...) -> None: ...

class Plot(_message.Message):
    __slots__ = ("name", "artifact")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    name: str
    artifact: _common_pb2.ArtifactRef
    def __init__(self, name: _Optional[str] = ..., artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class TrainingReport(_message.Message):
    __slots__ = ("feature_importance", "importance_method", "bias_metrics", "plots", "warnings", "dropped_columns", "priors", "optuna_storage_url", "study_name", "column_roles", "score_curve", "stacking", "stack_levels")
    class DroppedColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FEATURE_IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_METHOD_FIELD_NUMBER: _ClassVar[int]
    BIAS_METRICS_FIELD_NUMBER: _ClassVar[int]
    PLOTS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PRIORS_FIELD_NUMBER: _ClassVar[int]
    OPTUNA_STORAGE_URL_FIELD_NUMBER: _ClassVar[int]
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMN_ROLES_FIELD_NUMBER: _ClassVar[int]
    SCORE_CURVE_FIELD_NUMBER: _ClassVar[int]
    STACKING_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVELS_FIELD_NUMBER: _ClassVar[int]
    feature_importance: _containers.RepeatedCompositeFieldContainer[FeatureImportance]
    importance_method: str
    bias_metrics: _containers.RepeatedCompositeFieldContainer[BiasMetrics]
    plots: _containers.RepeatedCompositeFieldContainer[Plot]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    dropped_columns: _containers.ScalarMap[str, str]
    priors: _containers.RepeatedCompositeFieldContainer[WarmStartPrior]
    optuna_storage_url: str
    study_name: str
    column_roles: _containers.RepeatedCompositeFieldContainer[ColumnRole]
    score_curve: _containers.RepeatedCompositeFieldContainer[ScorePoint]
    stacking: str
    stack_levels: int
    def __init__(self, feature_importance: _Optional[_Iterable[_Union[FeatureImportance, _Mapping]]] = ..., importance_method: _Optional[str] = ..., bias_metrics: _Optional[_Iterable[_Union[BiasMetrics, _Mapping]]] = ..., plots: _Optional[_Iterable[_Union[Plot, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., dropped_columns: _Optional[_Mapping[str, str]] = ..., priors: _Optional[_Iterable[_Union[WarmStartPrior, _Mapping]]] = ..., optuna_storage_url: _Optional[str] = ..., study_name: _Optional[str] = ..., column_roles: _Optional[_Iterable[_Union[ColumnRole, _Mapping]]] = ..., score_curve: _Optional[_Iterable[_Union[ScorePoint, _Mapping]]] = ..., stacking: _Optional[str] = ..., stack_levels: _Optional[int] = ...) -> None: ...

class ScorePoint(_message.Message):
    __slots__ = ("elapsed_seconds", "score", "series", "stack_level", "trial")
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    elapsed_seconds: float
    score: float
    series: str
    stack_level: int
    trial: int
    def __init__(self, elapsed_seconds: _Optional[float] = ..., score: _Optional[float] = ..., series: _Optional[str] = ..., stack_level: _Optional[int] = ..., trial: _Optional[int] = ...) -> None: ...

class ColumnRole(_message.Message):
    __slots__ = ("column", "role", "overridden", "detail", "features")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    column: str
    role: str
    overridden: bool
    detail: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, column: _Optional[str] = ..., role: _Optional[str] = ..., overridden: bool = ..., detail: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTrainingReportRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetTrainingReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: TrainingReport
    def __init__(self, report: _Optional[_Union[TrainingReport, _Mapping]] = ...) -> None: ...

class FeatureRow(_message.Message):
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

class RowContributions(_message.Message):
    __slots__ = ("contributions", "base_value", "prediction")
    class ContributionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUE_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    contributions: _containers.ScalarMap[str, float]
    base_value: float
    prediction: float
    def __init__(self, contributions: _Optional[_Mapping[str, float]] = ..., base_value: _Optional[float] = ..., prediction: _Optional[float] = ...) -> None: ...

class ExplainPredictionsRequest(_message.Message):
    __slots__ = ("job_id", "trial_number", "rows", "target_class")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    trial_number: int
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    target_class: str
    def __init__(self, job_id: _Optional[str] = ..., trial_number: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ..., target_class: _Optional[str] = ...) -> None: ...

class ExplainPredictionsResponse(_message.Message):
    __slots__ = ("rows", "method")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[RowContributions]
    method: str
    def __init__(self, rows: _Optional[_Iterable[_Union[RowContributions, _Mapping]]] = ..., method: _Optional[str] = ...) -> None: ...

class ComputeBiasMetricsRequest(_message.Message):
    __slots__ = ("job_id", "facet_column", "facet_values")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FACET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FACET_VALUES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    facet_column: str
    facet_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., facet_column: _Optional[str] = ..., facet_values: _Optional[_Iterable[str]] = ...) -> None: ...

class ComputeBiasMetricsResponse(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[BiasMetrics]
    def __init__(self, metrics: _Optional[_Iterable[_Union[BiasMetrics, _Mapping]]] = ...) -> None: ...

class SimilarStudy(_message.Message):
    __slots__ = ("job_id", "dataset", "reason", "distance", "best_trials")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIALS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dataset: _common_pb2.DatasetRef
    reason: str
    distance: float
    best_trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, job_id: _Optional[str] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., reason: _Optional[str] = ..., distance: _Optional[float] = ..., best_trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...

class FindSimilarStudiesRequest(_message.Message):
    __slots__ = ("dataset", "meta_features", "task_type", "k", "trials_per_study")
    class MetaFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DATASET_FIELD_NUMBER: _ClassVar[int]
    META_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    TRIALS_PER_STUDY_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.DatasetRef
    meta_features: _containers.ScalarMap[str, float]
    task_type: TaskType
    k: int
    trials_per_study: int
    def __init__(self, dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., meta_features: _Optional[_Mapping[str, float]] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., k: _Optional[int] = ..., trials_per_study: _Optional[int] = ...) -> None: ...

class FindSimilarStudiesResponse(_message.Message):
    __slots__ = ("studies",)
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[SimilarStudy]
    def __init__(self, studies: _Optional[_Iterable[_Union[SimilarStudy, _Mapping]]] = ...) -> None: ...

class GetResourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResourceAllocation(_message.Message):
    __slots__ = ("job_id", "resources", "gpu_indices")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    resources: _common_pb2.ResourceRequest
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_id: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ..., gpu_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class GetResourcesResponse(_message.Message):
    __slots__ = ("cpus_total", "cpus_free", "gpus", "allocations", "gpu_discovery_note")
    CPUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CPUS_FREE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    GPU_DISCOVERY_NOTE_FIELD_NUMBER: _ClassVar[int]
    cpus_total: float
    cpus_free: float
    gpus: _containers.RepeatedCompositeFieldContainer[_common_pb2.GpuDevice]
    allocations: _containers.RepeatedCompositeFieldContainer[ResourceAllocation]
    gpu_discovery_note: str
    def __init__(self, cpus_total: _Optional[float] = ..., cpus_free: _Optional[float] = ..., gpus: _Optional[_Iterable[_Union[_common_pb2.GpuDevice, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[ResourceAllocation, _Mapping]]] = ..., gpu_discovery_note: _Optional[str] = ...) -> None: ...

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

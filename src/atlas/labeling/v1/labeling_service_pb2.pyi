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
    TASK_TYPE_TEXT_CLASSIFICATION: _ClassVar[TaskType]
    TASK_TYPE_TEXT_SPANS: _ClassVar[TaskType]
    TASK_TYPE_IMAGE_CLASSIFICATION: _ClassVar[TaskType]
    TASK_TYPE_OCR: _ClassVar[TaskType]
    TASK_TYPE_FACE_BOXES: _ClassVar[TaskType]
    TASK_TYPE_FACE_PAIR: _ClassVar[TaskType]
    TASK_TYPE_OBJECT_BOXES: _ClassVar[TaskType]

class ConsensusMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENSUS_METHOD_UNSPECIFIED: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_MAJORITY: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_WEIGHTED: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_REVIEW: _ClassVar[ConsensusMethod]

class QueueOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_ORDER_UNSPECIFIED: _ClassVar[QueueOrder]
    QUEUE_ORDER_FIFO: _ClassVar[QueueOrder]
    QUEUE_ORDER_LEAST_CONFIDENCE: _ClassVar[QueueOrder]
    QUEUE_ORDER_MARGIN: _ClassVar[QueueOrder]
    QUEUE_ORDER_ENTROPY: _ClassVar[QueueOrder]
    QUEUE_ORDER_DIVERSITY: _ClassVar[QueueOrder]

class SkipPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SKIP_POLICY_UNSPECIFIED: _ClassVar[SkipPolicy]
    SKIP_POLICY_REQUEUE_FOR_ME: _ClassVar[SkipPolicy]
    SKIP_POLICY_REQUEUE_FOR_OTHERS: _ClassVar[SkipPolicy]
    SKIP_POLICY_IGNORE: _ClassVar[SkipPolicy]

class ItemStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_STATUS_UNSPECIFIED: _ClassVar[ItemStatus]
    ITEM_STATUS_UNLABELED: _ClassVar[ItemStatus]
    ITEM_STATUS_IN_PROGRESS: _ClassVar[ItemStatus]
    ITEM_STATUS_ANNOTATED: _ClassVar[ItemStatus]
    ITEM_STATUS_IN_REVIEW: _ClassVar[ItemStatus]
    ITEM_STATUS_DONE: _ClassVar[ItemStatus]
    ITEM_STATUS_IN_CORRECTION: _ClassVar[ItemStatus]
    ITEM_STATUS_SKIPPED: _ClassVar[ItemStatus]

class FacePairDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACE_PAIR_DECISION_UNSPECIFIED: _ClassVar[FacePairDecision]
    FACE_PAIR_DECISION_SAME: _ClassVar[FacePairDecision]
    FACE_PAIR_DECISION_DIFFERENT: _ClassVar[FacePairDecision]
    FACE_PAIR_DECISION_UNSURE: _ClassVar[FacePairDecision]

class AnnotationSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANNOTATION_SOURCE_UNSPECIFIED: _ClassVar[AnnotationSource]
    ANNOTATION_SOURCE_HUMAN: _ClassVar[AnnotationSource]
    ANNOTATION_SOURCE_MODEL: _ClassVar[AnnotationSource]
    ANNOTATION_SOURCE_CONSENSUS: _ClassVar[AnnotationSource]
    ANNOTATION_SOURCE_REVIEW: _ClassVar[AnnotationSource]

class ReviewDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_DECISION_UNSPECIFIED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_ACCEPT: _ClassVar[ReviewDecision]
    REVIEW_DECISION_REJECT: _ClassVar[ReviewDecision]
    REVIEW_DECISION_CORRECT: _ClassVar[ReviewDecision]

class CorrectionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CORRECTION_REASON_UNSPECIFIED: _ClassVar[CorrectionReason]
    CORRECTION_REASON_LOW_CONFIDENCE: _ClassVar[CorrectionReason]
    CORRECTION_REASON_DISAGREEMENT: _ClassVar[CorrectionReason]
    CORRECTION_REASON_MODEL_HUMAN_CONFLICT: _ClassVar[CorrectionReason]
    CORRECTION_REASON_BAD_CASE: _ClassVar[CorrectionReason]
    CORRECTION_REASON_LOW_GOLD_ACCURACY: _ClassVar[CorrectionReason]

class CorrectionResolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CORRECTION_RESOLUTION_UNSPECIFIED: _ClassVar[CorrectionResolution]
    CORRECTION_RESOLUTION_OPEN: _ClassVar[CorrectionResolution]
    CORRECTION_RESOLUTION_REQUEUED: _ClassVar[CorrectionResolution]
    CORRECTION_RESOLUTION_RESOLVED: _ClassVar[CorrectionResolution]
    CORRECTION_RESOLUTION_ESCALATED: _ClassVar[CorrectionResolution]

class BadCaseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BAD_CASE_REASON_UNSPECIFIED: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_LOW_CONFIDENCE: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_HIGH_DRIFT: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_SHADOW_DISAGREEMENT: _ClassVar[BadCaseReason]
    BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH: _ClassVar[BadCaseReason]

class AssignmentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSIGNMENT_STATE_UNSPECIFIED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_ACTIVE: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_SUBMITTED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_SKIPPED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_EXPIRED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_REJECTED: _ClassVar[AssignmentState]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PARQUET: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSONL: _ClassVar[ExportFormat]
    EXPORT_FORMAT_COCO: _ClassVar[ExportFormat]

class LabelingJobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABELING_JOB_KIND_UNSPECIFIED: _ClassVar[LabelingJobKind]
    LABELING_JOB_KIND_PRELABEL: _ClassVar[LabelingJobKind]
    LABELING_JOB_KIND_IMPORT: _ClassVar[LabelingJobKind]
    LABELING_JOB_KIND_EXPORT: _ClassVar[LabelingJobKind]
    LABELING_JOB_KIND_LABEL_ISSUES: _ClassVar[LabelingJobKind]
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_TEXT_CLASSIFICATION: TaskType
TASK_TYPE_TEXT_SPANS: TaskType
TASK_TYPE_IMAGE_CLASSIFICATION: TaskType
TASK_TYPE_OCR: TaskType
TASK_TYPE_FACE_BOXES: TaskType
TASK_TYPE_FACE_PAIR: TaskType
TASK_TYPE_OBJECT_BOXES: TaskType
CONSENSUS_METHOD_UNSPECIFIED: ConsensusMethod
CONSENSUS_METHOD_MAJORITY: ConsensusMethod
CONSENSUS_METHOD_WEIGHTED: ConsensusMethod
CONSENSUS_METHOD_REVIEW: ConsensusMethod
QUEUE_ORDER_UNSPECIFIED: QueueOrder
QUEUE_ORDER_FIFO: QueueOrder
QUEUE_ORDER_LEAST_CONFIDENCE: QueueOrder
QUEUE_ORDER_MARGIN: QueueOrder
QUEUE_ORDER_ENTROPY: QueueOrder
QUEUE_ORDER_DIVERSITY: QueueOrder
SKIP_POLICY_UNSPECIFIED: SkipPolicy
SKIP_POLICY_REQUEUE_FOR_ME: SkipPolicy
SKIP_POLICY_REQUEUE_FOR_OTHERS: SkipPolicy
SKIP_POLICY_IGNORE: SkipPolicy
ITEM_STATUS_UNSPECIFIED: ItemStatus
ITEM_STATUS_UNLABELED: ItemStatus
ITEM_STATUS_IN_PROGRESS: ItemStatus
ITEM_STATUS_ANNOTATED: ItemStatus
ITEM_STATUS_IN_REVIEW: ItemStatus
ITEM_STATUS_DONE: ItemStatus
ITEM_STATUS_IN_CORRECTION: ItemStatus
ITEM_STATUS_SKIPPED: ItemStatus
FACE_PAIR_DECISION_UNSPECIFIED: FacePairDecision
FACE_PAIR_DECISION_SAME: FacePairDecision
FACE_PAIR_DECISION_DIFFERENT: FacePairDecision
FACE_PAIR_DECISION_UNSURE: FacePairDecision
ANNOTATION_SOURCE_UNSPECIFIED: AnnotationSource
ANNOTATION_SOURCE_HUMAN: AnnotationSource
ANNOTATION_SOURCE_MODEL: AnnotationSource
ANNOTATION_SOURCE_CONSENSUS: AnnotationSource
ANNOTATION_SOURCE_REVIEW: AnnotationSource
REVIEW_DECISION_UNSPECIFIED: ReviewDecision
REVIEW_DECISION_ACCEPT: ReviewDecision
REVIEW_DECISION_REJECT: ReviewDecision
REVIEW_DECISION_CORRECT: ReviewDecision
CORRECTION_REASON_UNSPECIFIED: CorrectionReason
CORRECTION_REASON_LOW_CONFIDENCE: CorrectionReason
CORRECTION_REASON_DISAGREEMENT: CorrectionReason
CORRECTION_REASON_MODEL_HUMAN_CONFLICT: CorrectionReason
CORRECTION_REASON_BAD_CASE: CorrectionReason
CORRECTION_REASON_LOW_GOLD_ACCURACY: CorrectionReason
CORRECTION_RESOLUTION_UNSPECIFIED: CorrectionResolution
CORRECTION_RESOLUTION_OPEN: CorrectionResolution
CORRECTION_RESOLUTION_REQUEUED: CorrectionResolution
CORRECTION_RESOLUTION_RESOLVED: CorrectionResolution
CORRECTION_RESOLUTION_ESCALATED: CorrectionResolution
BAD_CASE_REASON_UNSPECIFIED: BadCaseReason
BAD_CASE_REASON_LOW_CONFIDENCE: BadCaseReason
BAD_CASE_REASON_HIGH_DRIFT: BadCaseReason
BAD_CASE_REASON_SHADOW_DISAGREEMENT: BadCaseReason
BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH: BadCaseReason
ASSIGNMENT_STATE_UNSPECIFIED: AssignmentState
ASSIGNMENT_STATE_ACTIVE: AssignmentState
ASSIGNMENT_STATE_SUBMITTED: AssignmentState
ASSIGNMENT_STATE_SKIPPED: AssignmentState
ASSIGNMENT_STATE_EXPIRED: AssignmentState
ASSIGNMENT_STATE_REJECTED: AssignmentState
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_PARQUET: ExportFormat
EXPORT_FORMAT_JSONL: ExportFormat
EXPORT_FORMAT_COCO: ExportFormat
LABELING_JOB_KIND_UNSPECIFIED: LabelingJobKind
LABELING_JOB_KIND_PRELABEL: LabelingJobKind
LABELING_JOB_KIND_IMPORT: LabelingJobKind
LABELING_JOB_KIND_EXPORT: LabelingJobKind
LABELING_JOB_KIND_LABEL_ISSUES: LabelingJobKind

class LabelDefinition(_message.Message):
    __slots__ = ("name", "description", "kind", "allowed_pairs", "color")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PAIRS_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    kind: str
    allowed_pairs: _containers.RepeatedScalarFieldContainer[str]
    color: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., kind: _Optional[str] = ..., allowed_pairs: _Optional[_Iterable[str]] = ..., color: _Optional[str] = ...) -> None: ...

class ProjectSpec(_message.Message):
    __slots__ = ("name", "task_type", "labels", "multi_label", "overlap", "consensus", "review_fraction", "instructions", "low_confidence_threshold", "assignment_ttl", "tags", "skip_policy", "consensus_threshold", "max_relabel_rounds", "queue_order")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FRACTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    LOW_CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_TTL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SKIP_POLICY_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_RELABEL_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_ORDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_type: TaskType
    labels: _containers.RepeatedCompositeFieldContainer[LabelDefinition]
    multi_label: bool
    overlap: int
    consensus: ConsensusMethod
    review_fraction: float
    instructions: str
    low_confidence_threshold: float
    assignment_ttl: _duration_pb2.Duration
    tags: _containers.ScalarMap[str, str]
    skip_policy: SkipPolicy
    consensus_threshold: float
    max_relabel_rounds: int
    queue_order: QueueOrder
    def __init__(self, name: _Optional[str] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., labels: _Optional[_Iterable[_Union[LabelDefinition, _Mapping]]] = ..., multi_label: bool = ..., overlap: _Optional[int] = ..., consensus: _Optional[_Union[ConsensusMethod, str]] = ..., review_fraction: _Optional[float] = ..., instructions: _Optional[str] = ..., low_confidence_threshold: _Optional[float] = ..., assignment_ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., skip_policy: _Optional[_Union[SkipPolicy, str]] = ..., consensus_threshold: _Optional[float] = ..., max_relabel_rounds: _Optional[int] = ..., queue_order: _Optional[_Union[QueueOrder, str]] = ...) -> None: ...

class ProjectStats(_message.Message):
    __slots__ = ("items", "items_unlabeled", "items_in_progress", "items_done", "annotations", "in_correction_queue")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_UNLABELED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DONE_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    IN_CORRECTION_QUEUE_FIELD_NUMBER: _ClassVar[int]
    items: int
    items_unlabeled: int
    items_in_progress: int
    items_done: int
    annotations: int
    in_correction_queue: int
    def __init__(self, items: _Optional[int] = ..., items_unlabeled: _Optional[int] = ..., items_in_progress: _Optional[int] = ..., items_done: _Optional[int] = ..., annotations: _Optional[int] = ..., in_correction_queue: _Optional[int] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("project_id", "spec", "stats", "archived", "etag", "create_time")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    spec: ProjectSpec
    stats: ProjectStats
    archived: bool
    etag: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, project_id: _Optional[str] = ..., spec: _Optional[_Union[ProjectSpec, _Mapping]] = ..., stats: _Optional[_Union[ProjectStats, _Mapping]] = ..., archived: bool = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: ProjectSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[ProjectSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class GetProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ("page", "include_archived", "task_type")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    include_archived: bool
    task_type: TaskType
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., include_archived: bool = ..., task_type: _Optional[_Union[TaskType, str]] = ...) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects", "page")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[Project]
    page: _common_pb2.PageResponse
    def __init__(self, projects: _Optional[_Iterable[_Union[Project, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class UpdateProjectRequest(_message.Message):
    __slots__ = ("project_id", "spec", "etag", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    spec: ProjectSpec
    etag: str
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., spec: _Optional[_Union[ProjectSpec, _Mapping]] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class ArchiveProjectRequest(_message.Message):
    __slots__ = ("project_id", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ArchiveProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class ItemContent(_message.Message):
    __slots__ = ("text", "image", "image_pair")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PAIR_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: _common_pb2.ArtifactRef
    image_pair: ImagePair
    def __init__(self, text: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., image_pair: _Optional[_Union[ImagePair, _Mapping]] = ...) -> None: ...

class ImagePair(_message.Message):
    __slots__ = ("first", "second")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    first: _common_pb2.ArtifactRef
    second: _common_pb2.ArtifactRef
    def __init__(self, first: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., second: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class ClassLabels(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, labels: _Optional[_Iterable[str]] = ...) -> None: ...

class TextSpan(_message.Message):
    __slots__ = ("span_id", "start", "end", "label", "text")
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    span_id: str
    start: int
    end: int
    label: str
    text: str
    def __init__(self, span_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., label: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Relation(_message.Message):
    __slots__ = ("source_span_id", "target_span_id", "label")
    SOURCE_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    source_span_id: str
    target_span_id: str
    label: str
    def __init__(self, source_span_id: _Optional[str] = ..., target_span_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class SpanAnnotation(_message.Message):
    __slots__ = ("spans", "relations")
    SPANS_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[TextSpan]
    relations: _containers.RepeatedCompositeFieldContainer[Relation]
    def __init__(self, spans: _Optional[_Iterable[_Union[TextSpan, _Mapping]]] = ..., relations: _Optional[_Iterable[_Union[Relation, _Mapping]]] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x", "y", "width", "height", "rotation", "label", "text", "landmarks")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    rotation: float
    label: str
    text: str
    landmarks: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ..., rotation: _Optional[float] = ..., label: _Optional[str] = ..., text: _Optional[str] = ..., landmarks: _Optional[_Iterable[float]] = ...) -> None: ...

class BoxAnnotation(_message.Message):
    __slots__ = ("boxes", "image_width", "image_height")
    BOXES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedCompositeFieldContainer[BoundingBox]
    image_width: int
    image_height: int
    def __init__(self, boxes: _Optional[_Iterable[_Union[BoundingBox, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class AnnotationValue(_message.Message):
    __slots__ = ("classes", "spans", "boxes", "face_pair")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    FACE_PAIR_FIELD_NUMBER: _ClassVar[int]
    classes: ClassLabels
    spans: SpanAnnotation
    boxes: BoxAnnotation
    face_pair: FacePairDecision
    def __init__(self, classes: _Optional[_Union[ClassLabels, _Mapping]] = ..., spans: _Optional[_Union[SpanAnnotation, _Mapping]] = ..., boxes: _Optional[_Union[BoxAnnotation, _Mapping]] = ..., face_pair: _Optional[_Union[FacePairDecision, str]] = ...) -> None: ...

class Annotation(_message.Message):
    __slots__ = ("annotation_id", "item_id", "author", "source", "value", "confidence", "model", "duration_ms", "create_time", "review")
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    annotation_id: str
    item_id: str
    author: str
    source: AnnotationSource
    value: AnnotationValue
    confidence: float
    model: _common_pb2.ModelRef
    duration_ms: int
    create_time: _timestamp_pb2.Timestamp
    review: Review
    def __init__(self, annotation_id: _Optional[str] = ..., item_id: _Optional[str] = ..., author: _Optional[str] = ..., source: _Optional[_Union[AnnotationSource, str]] = ..., value: _Optional[_Union[AnnotationValue, _Mapping]] = ..., confidence: _Optional[float] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., duration_ms: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("reviewer", "decision", "correction", "comment", "create_time")
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    reviewer: str
    decision: ReviewDecision
    correction: AnnotationValue
    comment: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, reviewer: _Optional[str] = ..., decision: _Optional[_Union[ReviewDecision, str]] = ..., correction: _Optional[_Union[AnnotationValue, _Mapping]] = ..., comment: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "project_id", "content", "entity_id", "label_time", "metadata", "status", "annotations", "final_value", "agreement", "correction_reasons", "external_id", "create_time", "image_width", "image_height", "gold", "gold_value", "prediction_id", "model_version", "prediction_score", "final_source", "served_prediction")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    FINAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_REASONS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    GOLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    FINAL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SERVED_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    project_id: str
    content: ItemContent
    entity_id: str
    label_time: _timestamp_pb2.Timestamp
    metadata: _struct_pb2.Struct
    status: ItemStatus
    annotations: _containers.RepeatedCompositeFieldContainer[Annotation]
    final_value: AnnotationValue
    agreement: float
    correction_reasons: _containers.RepeatedScalarFieldContainer[CorrectionReason]
    external_id: str
    create_time: _timestamp_pb2.Timestamp
    image_width: int
    image_height: int
    gold: bool
    gold_value: AnnotationValue
    prediction_id: str
    model_version: str
    prediction_score: float
    final_source: AnnotationSource
    served_prediction: ServedPrediction
    def __init__(self, item_id: _Optional[str] = ..., project_id: _Optional[str] = ..., content: _Optional[_Union[ItemContent, _Mapping]] = ..., entity_id: _Optional[str] = ..., label_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[ItemStatus, str]] = ..., annotations: _Optional[_Iterable[_Union[Annotation, _Mapping]]] = ..., final_value: _Optional[_Union[AnnotationValue, _Mapping]] = ..., agreement: _Optional[float] = ..., correction_reasons: _Optional[_Iterable[_Union[CorrectionReason, str]]] = ..., external_id: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., gold: bool = ..., gold_value: _Optional[_Union[AnnotationValue, _Mapping]] = ..., prediction_id: _Optional[str] = ..., model_version: _Optional[str] = ..., prediction_score: _Optional[float] = ..., final_source: _Optional[_Union[AnnotationSource, str]] = ..., served_prediction: _Optional[_Union[ServedPrediction, _Mapping]] = ...) -> None: ...

class ServedPrediction(_message.Message):
    __slots__ = ("endpoint_name", "prediction_id", "row", "model_version", "score", "reasons", "detail")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    prediction_id: str
    row: int
    model_version: str
    score: float
    reasons: _containers.RepeatedScalarFieldContainer[BadCaseReason]
    detail: str
    def __init__(self, endpoint_name: _Optional[str] = ..., prediction_id: _Optional[str] = ..., row: _Optional[int] = ..., model_version: _Optional[str] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[BadCaseReason, str]]] = ..., detail: _Optional[str] = ...) -> None: ...

class NewItem(_message.Message):
    __slots__ = ("content", "entity_id", "label_time", "metadata", "external_id", "gold_value", "served_prediction")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    GOLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    SERVED_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    content: ItemContent
    entity_id: str
    label_time: _timestamp_pb2.Timestamp
    metadata: _struct_pb2.Struct
    external_id: str
    gold_value: AnnotationValue
    served_prediction: ServedPrediction
    def __init__(self, content: _Optional[_Union[ItemContent, _Mapping]] = ..., entity_id: _Optional[str] = ..., label_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., external_id: _Optional[str] = ..., gold_value: _Optional[_Union[AnnotationValue, _Mapping]] = ..., served_prediction: _Optional[_Union[ServedPrediction, _Mapping]] = ...) -> None: ...

class AddItemsRequest(_message.Message):
    __slots__ = ("project_id", "items", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    items: _containers.RepeatedCompositeFieldContainer[NewItem]
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[NewItem, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddItemsResponse(_message.Message):
    __slots__ = ("item_ids", "skipped")
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    skipped: int
    def __init__(self, item_ids: _Optional[_Iterable[str]] = ..., skipped: _Optional[int] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("project_id", "item_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    item_id: str
    def __init__(self, project_id: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class GetItemResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: Item
    def __init__(self, item: _Optional[_Union[Item, _Mapping]] = ...) -> None: ...

class ListItemsRequest(_message.Message):
    __slots__ = ("project_id", "statuses", "page", "omit_annotations")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    OMIT_ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    statuses: _containers.RepeatedScalarFieldContainer[ItemStatus]
    page: _common_pb2.PageRequest
    omit_annotations: bool
    def __init__(self, project_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[ItemStatus, str]]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., omit_annotations: bool = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("items", "page")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    page: _common_pb2.PageResponse
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("assignment_id", "project_id", "item", "annotator", "is_review", "expire_time", "submitted", "state")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    IS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    project_id: str
    item: Item
    annotator: str
    is_review: bool
    expire_time: _timestamp_pb2.Timestamp
    submitted: bool
    state: AssignmentState
    def __init__(self, assignment_id: _Optional[str] = ..., project_id: _Optional[str] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., annotator: _Optional[str] = ..., is_review: bool = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., submitted: bool = ..., state: _Optional[_Union[AssignmentState, str]] = ...) -> None: ...

class RequestAssignmentsRequest(_message.Message):
    __slots__ = ("project_id", "annotator", "count", "review", "prefer_correction_queue", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    PREFER_CORRECTION_QUEUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    annotator: str
    count: int
    review: bool
    prefer_correction_queue: bool
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., annotator: _Optional[str] = ..., count: _Optional[int] = ..., review: bool = ..., prefer_correction_queue: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class RequestAssignmentsResponse(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class ListAssignmentsRequest(_message.Message):
    __slots__ = ("project_id", "annotator", "include_submitted", "page")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    annotator: str
    include_submitted: bool
    page: _common_pb2.PageRequest
    def __init__(self, project_id: _Optional[str] = ..., annotator: _Optional[str] = ..., include_submitted: bool = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListAssignmentsResponse(_message.Message):
    __slots__ = ("assignments", "page")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    page: _common_pb2.PageResponse
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class RenewAssignmentLeaseRequest(_message.Message):
    __slots__ = ("assignment_id", "annotator")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    annotator: str
    def __init__(self, assignment_id: _Optional[str] = ..., annotator: _Optional[str] = ...) -> None: ...

class RenewAssignmentLeaseResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class SubmitAnnotationRequest(_message.Message):
    __slots__ = ("assignment_id", "value", "skip", "confidence", "duration_ms", "request_id", "annotator")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    value: AnnotationValue
    skip: bool
    confidence: float
    duration_ms: int
    request_id: str
    annotator: str
    def __init__(self, assignment_id: _Optional[str] = ..., value: _Optional[_Union[AnnotationValue, _Mapping]] = ..., skip: bool = ..., confidence: _Optional[float] = ..., duration_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., annotator: _Optional[str] = ...) -> None: ...

class SubmitAnnotationResponse(_message.Message):
    __slots__ = ("annotation", "item_status")
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    ITEM_STATUS_FIELD_NUMBER: _ClassVar[int]
    annotation: Annotation
    item_status: ItemStatus
    def __init__(self, annotation: _Optional[_Union[Annotation, _Mapping]] = ..., item_status: _Optional[_Union[ItemStatus, str]] = ...) -> None: ...

class SubmitReviewRequest(_message.Message):
    __slots__ = ("annotation_id", "decision", "correction", "comment", "request_id", "reviewer")
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    annotation_id: str
    decision: ReviewDecision
    correction: AnnotationValue
    comment: str
    request_id: str
    reviewer: str
    def __init__(self, annotation_id: _Optional[str] = ..., decision: _Optional[_Union[ReviewDecision, str]] = ..., correction: _Optional[_Union[AnnotationValue, _Mapping]] = ..., comment: _Optional[str] = ..., request_id: _Optional[str] = ..., reviewer: _Optional[str] = ...) -> None: ...

class SubmitReviewResponse(_message.Message):
    __slots__ = ("annotation", "item_status")
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    ITEM_STATUS_FIELD_NUMBER: _ClassVar[int]
    annotation: Annotation
    item_status: ItemStatus
    def __init__(self, annotation: _Optional[_Union[Annotation, _Mapping]] = ..., item_status: _Optional[_Union[ItemStatus, str]] = ...) -> None: ...

class AnnotatorStats(_message.Message):
    __slots__ = ("annotator", "annotations", "skipped", "gold_answered", "gold_correct", "gold_accuracy", "median_duration_ms")
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    GOLD_CORRECT_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    annotator: str
    annotations: int
    skipped: int
    gold_answered: int
    gold_correct: int
    gold_accuracy: float
    median_duration_ms: int
    def __init__(self, annotator: _Optional[str] = ..., annotations: _Optional[int] = ..., skipped: _Optional[int] = ..., gold_answered: _Optional[int] = ..., gold_correct: _Optional[int] = ..., gold_accuracy: _Optional[float] = ..., median_duration_ms: _Optional[int] = ...) -> None: ...

class GetAnnotatorStatsRequest(_message.Message):
    __slots__ = ("project_id", "annotator")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    annotator: str
    def __init__(self, project_id: _Optional[str] = ..., annotator: _Optional[str] = ...) -> None: ...

class GetAnnotatorStatsResponse(_message.Message):
    __slots__ = ("annotators", "suggestions")
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    annotators: _containers.RepeatedCompositeFieldContainer[AnnotatorStats]
    suggestions: _containers.RepeatedCompositeFieldContainer[SuggestionStats]
    def __init__(self, annotators: _Optional[_Iterable[_Union[AnnotatorStats, _Mapping]]] = ..., suggestions: _Optional[_Iterable[_Union[SuggestionStats, _Mapping]]] = ...) -> None: ...

class SuggestionStats(_message.Message):
    __slots__ = ("model_version", "suggestions", "answered", "accepted", "edited", "acceptance_rate")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    EDITED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_RATE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    suggestions: int
    answered: int
    accepted: int
    edited: int
    acceptance_rate: float
    def __init__(self, model_version: _Optional[str] = ..., suggestions: _Optional[int] = ..., answered: _Optional[int] = ..., accepted: _Optional[int] = ..., edited: _Optional[int] = ..., acceptance_rate: _Optional[float] = ...) -> None: ...

class AnnotatorAgreement(_message.Message):
    __slots__ = ("annotator", "annotations", "accuracy", "median_duration_ms")
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    annotator: str
    annotations: int
    accuracy: float
    median_duration_ms: int
    def __init__(self, annotator: _Optional[str] = ..., annotations: _Optional[int] = ..., accuracy: _Optional[float] = ..., median_duration_ms: _Optional[int] = ...) -> None: ...

class GetAgreementRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class GetAgreementResponse(_message.Message):
    __slots__ = ("items_compared", "kappa", "krippendorff_alpha", "span_f1", "box_iou", "annotators", "per_label")
    class PerLabelEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ITEMS_COMPARED_FIELD_NUMBER: _ClassVar[int]
    KAPPA_FIELD_NUMBER: _ClassVar[int]
    KRIPPENDORFF_ALPHA_FIELD_NUMBER: _ClassVar[int]
    SPAN_F1_FIELD_NUMBER: _ClassVar[int]
    BOX_IOU_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    PER_LABEL_FIELD_NUMBER: _ClassVar[int]
    items_compared: int
    kappa: float
    krippendorff_alpha: float
    span_f1: float
    box_iou: float
    annotators: _containers.RepeatedCompositeFieldContainer[AnnotatorAgreement]
    per_label: _containers.ScalarMap[str, float]
    def __init__(self, items_compared: _Optional[int] = ..., kappa: _Optional[float] = ..., krippendorff_alpha: _Optional[float] = ..., span_f1: _Optional[float] = ..., box_iou: _Optional[float] = ..., annotators: _Optional[_Iterable[_Union[AnnotatorAgreement, _Mapping]]] = ..., per_label: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CorrectionEntry(_message.Message):
    __slots__ = ("item", "reasons", "priority", "prediction_id", "details", "resolutions", "relabel_rounds")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    RELABEL_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    item: Item
    reasons: _containers.RepeatedScalarFieldContainer[CorrectionReason]
    priority: float
    prediction_id: str
    details: _containers.RepeatedScalarFieldContainer[str]
    resolutions: _containers.RepeatedScalarFieldContainer[CorrectionResolution]
    relabel_rounds: int
    def __init__(self, item: _Optional[_Union[Item, _Mapping]] = ..., reasons: _Optional[_Iterable[_Union[CorrectionReason, str]]] = ..., priority: _Optional[float] = ..., prediction_id: _Optional[str] = ..., details: _Optional[_Iterable[str]] = ..., resolutions: _Optional[_Iterable[_Union[CorrectionResolution, str]]] = ..., relabel_rounds: _Optional[int] = ...) -> None: ...

class ListCorrectionQueueRequest(_message.Message):
    __slots__ = ("project_id", "reasons", "page", "include_resolved")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    reasons: _containers.RepeatedScalarFieldContainer[CorrectionReason]
    page: _common_pb2.PageRequest
    include_resolved: bool
    def __init__(self, project_id: _Optional[str] = ..., reasons: _Optional[_Iterable[_Union[CorrectionReason, str]]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., include_resolved: bool = ...) -> None: ...

class ListCorrectionQueueResponse(_message.Message):
    __slots__ = ("entries", "page")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CorrectionEntry]
    page: _common_pb2.PageResponse
    def __init__(self, entries: _Optional[_Iterable[_Union[CorrectionEntry, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class PrelabelSpec(_message.Message):
    __slots__ = ("project_id", "endpoint_name", "statuses", "low_confidence_threshold", "label_mapping", "use_entity_id", "batch_size", "auto_label_target_accuracy")
    class LabelMappingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LOW_CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LABEL_MAPPING_FIELD_NUMBER: _ClassVar[int]
    USE_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUTO_LABEL_TARGET_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    endpoint_name: str
    statuses: _containers.RepeatedScalarFieldContainer[ItemStatus]
    low_confidence_threshold: float
    label_mapping: _containers.ScalarMap[str, str]
    use_entity_id: bool
    batch_size: int
    auto_label_target_accuracy: float
    def __init__(self, project_id: _Optional[str] = ..., endpoint_name: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[ItemStatus, str]]] = ..., low_confidence_threshold: _Optional[float] = ..., label_mapping: _Optional[_Mapping[str, str]] = ..., use_entity_id: bool = ..., batch_size: _Optional[int] = ..., auto_label_target_accuracy: _Optional[float] = ...) -> None: ...

class ManifestImport(_message.Message):
    __slots__ = ("manifest", "content_column", "second_content_column", "entity_column", "label_time_column", "external_id_column", "prelabel_column")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CONTENT_COLUMN_FIELD_NUMBER: _ClassVar[int]
    SECOND_CONTENT_COLUMN_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_COLUMN_FIELD_NUMBER: _ClassVar[int]
    PRELABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    manifest: _common_pb2.ArtifactRef
    content_column: str
    second_content_column: str
    entity_column: str
    label_time_column: str
    external_id_column: str
    prelabel_column: str
    def __init__(self, manifest: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., content_column: _Optional[str] = ..., second_content_column: _Optional[str] = ..., entity_column: _Optional[str] = ..., label_time_column: _Optional[str] = ..., external_id_column: _Optional[str] = ..., prelabel_column: _Optional[str] = ...) -> None: ...

class BadCaseImport(_message.Message):
    __slots__ = ("endpoint_name", "start_time", "end_time", "max_confidence", "max_items", "content_column")
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_COLUMN_FIELD_NUMBER: _ClassVar[int]
    endpoint_name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    max_confidence: float
    max_items: int
    content_column: str
    def __init__(self, endpoint_name: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., max_confidence: _Optional[float] = ..., max_items: _Optional[int] = ..., content_column: _Optional[str] = ...) -> None: ...

class ImportSpec(_message.Message):
    __slots__ = ("project_id", "manifest", "bad_cases")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    BAD_CASES_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    manifest: ManifestImport
    bad_cases: BadCaseImport
    def __init__(self, project_id: _Optional[str] = ..., manifest: _Optional[_Union[ManifestImport, _Mapping]] = ..., bad_cases: _Optional[_Union[BadCaseImport, _Mapping]] = ...) -> None: ...

class ExportSpec(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "include_model_labels", "min_agreement", "dataset_name", "format", "after_cursor", "rows_per_part")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MODEL_LABELS_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_PART_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    include_model_labels: bool
    min_agreement: float
    dataset_name: str
    format: ExportFormat
    after_cursor: str
    rows_per_part: int
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., include_model_labels: bool = ..., min_agreement: _Optional[float] = ..., dataset_name: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., after_cursor: _Optional[str] = ..., rows_per_part: _Optional[int] = ...) -> None: ...

class LabelIssuesSpec(_message.Message):
    __slots__ = ("project_id", "probabilities", "key_column", "match_entity_id", "probability_columns")
    class ProbabilityColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    KEY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    MATCH_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    probabilities: _common_pb2.ArtifactRef
    key_column: str
    match_entity_id: bool
    probability_columns: _containers.ScalarMap[str, str]
    def __init__(self, project_id: _Optional[str] = ..., probabilities: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., key_column: _Optional[str] = ..., match_entity_id: bool = ..., probability_columns: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Export(_message.Message):
    __slots__ = ("export_id", "project_id", "artifact", "dataset", "rows", "label_counts", "spec", "create_time", "cursor", "parts", "ground_truth")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    project_id: str
    artifact: _common_pb2.ArtifactRef
    dataset: _common_pb2.DatasetRef
    rows: int
    label_counts: _containers.ScalarMap[str, int]
    spec: ExportSpec
    create_time: _timestamp_pb2.Timestamp
    cursor: str
    parts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    ground_truth: GroundTruthFeedback
    def __init__(self, export_id: _Optional[str] = ..., project_id: _Optional[str] = ..., artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., rows: _Optional[int] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., spec: _Optional[_Union[ExportSpec, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., cursor: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ..., ground_truth: _Optional[_Union[GroundTruthFeedback, _Mapping]] = ...) -> None: ...

class GroundTruthFeedback(_message.Message):
    __slots__ = ("sent", "accepted", "duplicate", "updated", "rejected", "rejected_reasons", "rejections", "not_sent")
    class RejectedReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SENT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REASONS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    NOT_SENT_FIELD_NUMBER: _ClassVar[int]
    sent: int
    accepted: int
    duplicate: int
    updated: int
    rejected: int
    rejected_reasons: _containers.ScalarMap[str, int]
    rejections: _containers.RepeatedCompositeFieldContainer[GroundTruthRejection]
    not_sent: int
    def __init__(self, sent: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicate: _Optional[int] = ..., updated: _Optional[int] = ..., rejected: _Optional[int] = ..., rejected_reasons: _Optional[_Mapping[str, int]] = ..., rejections: _Optional[_Iterable[_Union[GroundTruthRejection, _Mapping]]] = ..., not_sent: _Optional[int] = ...) -> None: ...

class GroundTruthRejection(_message.Message):
    __slots__ = ("item_id", "prediction_id", "row", "label", "reason", "message")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    prediction_id: str
    row: int
    label: str
    reason: str
    message: str
    def __init__(self, item_id: _Optional[str] = ..., prediction_id: _Optional[str] = ..., row: _Optional[int] = ..., label: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ItemJobResult(_message.Message):
    __slots__ = ("items_processed", "items_added", "items_skipped", "queued_for_correction", "errors", "auto_labeled", "auto_label_threshold")
    ITEMS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_ADDED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FOR_CORRECTION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    AUTO_LABELED_FIELD_NUMBER: _ClassVar[int]
    AUTO_LABEL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    items_processed: int
    items_added: int
    items_skipped: int
    queued_for_correction: int
    errors: int
    auto_labeled: int
    auto_label_threshold: float
    def __init__(self, items_processed: _Optional[int] = ..., items_added: _Optional[int] = ..., items_skipped: _Optional[int] = ..., queued_for_correction: _Optional[int] = ..., errors: _Optional[int] = ..., auto_labeled: _Optional[int] = ..., auto_label_threshold: _Optional[float] = ...) -> None: ...

class LabelingJob(_message.Message):
    __slots__ = ("status", "kind", "prelabel", "import_items", "export", "label_issues", "item_result", "export_result")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRELABEL_FIELD_NUMBER: _ClassVar[int]
    IMPORT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    LABEL_ISSUES_FIELD_NUMBER: _ClassVar[int]
    ITEM_RESULT_FIELD_NUMBER: _ClassVar[int]
    EXPORT_RESULT_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    kind: LabelingJobKind
    prelabel: PrelabelSpec
    import_items: ImportSpec
    export: ExportSpec
    label_issues: LabelIssuesSpec
    item_result: ItemJobResult
    export_result: Export
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, _Mapping]] = ..., kind: _Optional[_Union[LabelingJobKind, str]] = ..., prelabel: _Optional[_Union[PrelabelSpec, _Mapping]] = ..., import_items: _Optional[_Union[ImportSpec, _Mapping]] = ..., export: _Optional[_Union[ExportSpec, _Mapping]] = ..., label_issues: _Optional[_Union[LabelIssuesSpec, _Mapping]] = ..., item_result: _Optional[_Union[ItemJobResult, _Mapping]] = ..., export_result: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class SubmitPrelabelJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: PrelabelSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[PrelabelSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitPrelabelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class SubmitImportJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: ImportSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[ImportSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitImportJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class SubmitLabelIssuesJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: LabelIssuesSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[LabelIssuesSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitLabelIssuesJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class SubmitExportJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: ExportSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[ExportSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitExportJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class GetLabelingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetLabelingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class WatchLabelingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchLabelingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class CancelLabelingJobRequest(_message.Message):
    __slots__ = ("job_id", "request_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelLabelingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LabelingJob
    def __init__(self, job: _Optional[_Union[LabelingJob, _Mapping]] = ...) -> None: ...

class ListLabelingJobsRequest(_message.Message):
    __slots__ = ("page", "project_id", "kind", "states")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    project_id: str
    kind: LabelingJobKind
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., project_id: _Optional[str] = ..., kind: _Optional[_Union[LabelingJobKind, str]] = ..., states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ...) -> None: ...

class ListLabelingJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[LabelingJob]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[LabelingJob, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class ListExportsRequest(_message.Message):
    __slots__ = ("project_id", "page")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    page: _common_pb2.PageRequest
    def __init__(self, project_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListExportsResponse(_message.Message):
    __slots__ = ("exports", "page")
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[Export]
    page: _common_pb2.PageResponse
    def __init__(self, exports: _Optional[_Iterable[_Union[Export, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

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

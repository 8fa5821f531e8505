"""The labeling service's stable error reasons (the contract: docs/errors.md)."""

from __future__ import annotations

from enum import auto

from atlas_core.reasons import (
    ABORTED,
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PERMISSION_DENIED,
    Reason,
)


class LabelingReason(Reason):
    """Reasons the labeling service returns besides :class:`atlas_core.reasons.SharedReason`."""

    # -- projects and label schema
    EMPTY_ID = (
        auto(),
        INVALID_ARGUMENT,
        "A required id (project_id, item_id, assignment_id, annotation_id, job_id, "
        "endpoint_name) is empty, or the annotator/reviewer is empty and the call carries no "
        "token to name the caller.",
        "Give the id, or send a bearer token so the caller names itself.",
    )
    PROJECT_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No project has this id.",
        "Check the id (ListProjects).",
    )
    PROJECT_EXISTS = (
        auto(),
        ALREADY_EXISTS,
        "Another project already has this name (on create or rename).",
        "Use another name, or fetch the existing project (a retry with the same request_id "
        "returns it).",
    )
    ETAG_MISMATCH = (
        auto(),
        ABORTED,
        "UpdateProject: the project changed since the etag the caller read.",
        "GetProject again, reapply the change to the fresh spec and send its etag.",
    )
    ARCHIVED = (
        auto(),
        FAILED_PRECONDITION,
        "The project is archived, so it takes no new items, assignments, annotations, imports "
        "or pre-labels.",
        "Use an active project; archived data and exports stay readable.",
    )
    BAD_NAME = (
        auto(),
        INVALID_ARGUMENT,
        "spec.name is empty (after trimming) or longer than 128 characters.",
        "Give a name of 1-128 characters.",
    )
    BAD_TASK_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "The task type is unspecified or not one this service knows.",
        "Set one of the TaskType values.",
    )
    TASK_TYPE_CHANGED = (
        auto(),
        INVALID_ARGUMENT,
        "UpdateProject would change the project's task type.",
        "Keep the task type; create a new project for another task.",
    )
    BAD_OVERLAP = (
        auto(),
        INVALID_ARGUMENT,
        "spec.overlap is outside 1..50 (0 means 1).",
        "Ask for 1-50 annotators per item.",
    )
    BAD_ROUNDS = (
        auto(),
        INVALID_ARGUMENT,
        "spec.max_relabel_rounds is outside 0..50.",
        "Give 0-50 extra relabel rounds.",
    )
    BAD_TTL = (
        auto(),
        INVALID_ARGUMENT,
        "spec.assignment_ttl is not positive or exceeds 7 days.",
        "Give a lease of more than 0 and at most 7 days.",
    )
    BAD_SKIP_POLICY = (
        auto(),
        INVALID_ARGUMENT,
        "spec.skip_policy is not a known SkipPolicy.",
        "Set one of the SkipPolicy values (or leave it unspecified).",
    )
    BAD_QUEUE_ORDER = (
        auto(),
        INVALID_ARGUMENT,
        "spec.queue_order is not a known QueueOrder.",
        "Set one of the QueueOrder values (or leave it unspecified for FIFO).",
    )
    BAD_CONSENSUS = (
        auto(),
        INVALID_ARGUMENT,
        "spec.consensus is not a known consensus method.",
        "Use majority, weighted or review.",
    )
    BAD_MULTI_LABEL = (
        auto(),
        INVALID_ARGUMENT,
        "spec.multi_label is set on a task type that is not classification.",
        "Unset multi_label, or use a classification task type.",
    )
    BAD_LABEL = (
        auto(),
        INVALID_ARGUMENT,
        "A label definition is malformed: empty name, unknown kind, a kind the task type does "
        "not take, or an allowed_pairs entry that is not '<entity>:<entity>' of defined entity "
        "labels (the message names the label).",
        "Fix the named label: class labels for classification and boxes, entity and relation "
        "labels for spans, none for face pairs.",
    )
    DUPLICATE_LABEL = (
        auto(),
        INVALID_ARGUMENT,
        "A label is defined twice in the schema, or an annotation's classes repeat a label.",
        "Name each label once.",
    )
    NO_LABELS = (
        auto(),
        (INVALID_ARGUMENT, FAILED_PRECONDITION),
        "INVALID_ARGUMENT: the task type needs labels and the schema has none (spans need an "
        "entity label). FAILED_PRECONDITION: no label row matches the export's selection after "
        "its cursor.",
        "Define the labels; for an export, widen the selection or wait until items are decided.",
    )
    LABEL_IN_USE = (
        auto(),
        FAILED_PRECONDITION,
        "UpdateProject would remove or rename a label that annotations use.",
        "Keep the label; labels may only be added.",
    )
    # -- items
    ITEM_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The project has no item with this id.",
        "Check the ids (ListItems).",
    )
    NO_ITEMS = (
        auto(),
        INVALID_ARGUMENT,
        "AddItems was sent no items.",
        "Send at least one item.",
    )
    TOO_MANY_ITEMS = (
        auto(),
        INVALID_ARGUMENT,
        "AddItems was sent more items than the per-request limit (1,000 by default).",
        "Split the items over several calls, or import a manifest (SubmitImportJob).",
    )
    BAD_CONTENT = (
        auto(),
        INVALID_ARGUMENT,
        "An item's content does not fit the task type (text vs one image vs an image pair) or "
        "is empty; in an import, a manifest or captured row lacks the content value.",
        "Give the content the task type needs (the message names the item or row).",
    )
    BAD_SERVED_PREDICTION = (
        auto(),
        INVALID_ARGUMENT,
        "An item's served_prediction lacks its endpoint or prediction id, has a negative row, "
        "or names an unknown bad-case reason.",
        "Send the prediction id and row serving answered with, and the endpoint's name.",
    )
    BAD_IMAGE = (
        auto(),
        INVALID_ARGUMENT,
        "An item's image artifact is not a readable image format, or has no pixels.",
        "Upload a valid PNG, JPEG, GIF, BMP or WebP image.",
    )
    NO_IMAGE = (
        auto(),
        NOT_FOUND,
        "The web app was asked for an image the item does not have (index past its images).",
        "Ask for image 0 of an image item, or 0 and 1 of an image pair.",
    )

    # -- values and annotations
    MISSING_VALUE = (
        auto(),
        INVALID_ARGUMENT,
        "The annotation value is unset or empty (no classes, a box without a label), or a "
        "CORRECT review has no correction.",
        "Set the value the task type needs.",
    )
    MALFORMED_VALUE = (
        auto(),
        INVALID_ARGUMENT,
        "The web app received an answer that is not an AnnotationValue in JSON.",
        "Submit the form the page built; reload the page if it was edited.",
    )
    UNEXPECTED_VALUE = (
        auto(),
        INVALID_ARGUMENT,
        "A review carries a correction but its decision is not CORRECT.",
        "Drop the correction, or use CORRECT.",
    )
    VALUE_AND_SKIP = (
        auto(),
        INVALID_ARGUMENT,
        "SubmitAnnotation sets both a value and skip.",
        "Send either the value or skip.",
    )
    WRONG_VALUE_KIND = (
        auto(),
        INVALID_ARGUMENT,
        "The value is of another kind than the task type takes (e.g. spans for an image task).",
        "Send the value field the message names.",
    )
    TOO_MANY_LABELS = (
        auto(),
        INVALID_ARGUMENT,
        "A classification value has several labels but the project is not multi-label.",
        "Send exactly one label.",
    )
    UNKNOWN_LABEL = (
        auto(),
        INVALID_ARGUMENT,
        "A class, span, relation or box label is not a label of that kind in the project.",
        "Use a label of the project's schema (GetProject), or add it with UpdateProject.",
    )
    BAD_SPAN = (
        auto(),
        INVALID_ARGUMENT,
        "A span has an empty or repeated span_id, or end is not greater than start >= 0.",
        "Give unique span ids and 0 <= start < end.",
    )
    SPAN_OUT_OF_TEXT = (
        auto(),
        INVALID_ARGUMENT,
        "A span ends past the item's text.",
        "Count offsets in Unicode code points within the text.",
    )
    SPAN_TEXT_MISMATCH = (
        auto(),
        INVALID_ARGUMENT,
        "A span's text differs from the item text at its offsets.",
        "Use Unicode code point offsets (not bytes or UTF-16 units), or send the matching text.",
    )
    MISSING_REGION = (
        auto(),
        INVALID_ARGUMENT,
        "A relation's source or target names no span of the same annotation.",
        "Refer to span_ids defined in the annotation.",
    )
    BAD_RELATION = (
        auto(),
        INVALID_ARGUMENT,
        "A relation joins entity labels its allowed_pairs do not allow.",
        "Use a relation the schema allows between these entities.",
    )
    BAD_BOX = (
        auto(),
        INVALID_ARGUMENT,
        "A box has a non-finite coordinate, zero or negative size, or an odd number of "
        "landmark values.",
        "Send finite pixel coordinates, positive width and height, and x,y landmark pairs.",
    )
    BOX_OUTSIDE_IMAGE = (
        auto(),
        INVALID_ARGUMENT,
        "A box or one of its landmarks lies outside the item's image.",
        "Clip the box to the image's pixel size (the message gives it).",
    )
    EMPTY_TEXT = (
        auto(),
        INVALID_ARGUMENT,
        "An OCR box has no transcription.",
        "Give every OCR box its text.",
    )
    BAD_FACE_PAIR = (
        auto(),
        INVALID_ARGUMENT,
        "A face-pair answer is not SAME, DIFFERENT or UNSURE.",
        "Send one of those decisions.",
    )
    OUT_OF_RANGE = (
        auto(),
        INVALID_ARGUMENT,
        "A number is outside its range: a confidence, score, threshold or agreement outside "
        "[0, 1], a negative duration, max_items or rows_per_part, or batch_size outside "
        "0..10000 (the message names the field).",
        "Send a value inside the range the message gives.",
    )
    # -- assignments and leases
    EMPTY_ANNOTATOR = (
        auto(),
        INVALID_ARGUMENT,
        "The annotator or reviewer id is empty.",
        "Name the annotator or reviewer.",
    )
    BAD_COUNT = (
        auto(),
        INVALID_ARGUMENT,
        "RequestAssignments: count is outside 1..100.",
        "Ask for 1-100 items.",
    )
    ASSIGNMENT_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No assignment has this id.",
        "Check the id (ListAssignments).",
    )
    NOT_ASSIGNEE = (
        auto(),
        PERMISSION_DENIED,
        "The assignment belongs to another annotator.",
        "Act only on your own assignments; request your own with RequestAssignments.",
    )
    LEASE_EXPIRED = (
        auto(),
        FAILED_PRECONDITION,
        "The assignment's lease expired, so the item may have gone to someone else.",
        "Request a new assignment; renew leases (RenewAssignmentLease) while working.",
    )
    ANNOTATOR_PAUSED = (
        auto(),
        FAILED_PRECONDITION,
        "The annotator's gold accuracy is below the bar (QUEUE__MIN_GOLD_ACCURACY, once they "
        "answered QUEUE__MIN_GOLD_ANSWERS gold items) and no gold item is left for them: they "
        "get no more items to label in this project, and what they labelled is flagged "
        "LOW_GOLD_ACCURACY.",
        "Another annotator takes over; an operator who wants them back lowers the bar.",
    )
    ASSIGNMENT_CLOSED = (
        auto(),
        FAILED_PRECONDITION,
        "The assignment is no longer active (submitted, skipped or rejected), so it cannot be "
        "renewed or answered.",
        "Request new assignments (RequestAssignments).",
    )
    ALREADY_SUBMITTED = (
        auto(),
        FAILED_PRECONDITION,
        "The assignment was already answered (submitted, skipped or rejected) with another "
        "request_id.",
        "Nothing to do; to retry a submit, reuse its original request_id.",
    )
    REVIEW_ASSIGNMENT = (
        auto(),
        FAILED_PRECONDITION,
        "SubmitAnnotation was called on a review assignment.",
        "Answer review assignments with SubmitReview.",
    )
    # -- review
    MISSING_DECISION = (
        auto(),
        INVALID_ARGUMENT,
        "The review decision is not ACCEPT, REJECT or CORRECT.",
        "Set the decision.",
    )
    ANNOTATION_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No annotation has this id.",
        "Check the id (GetItem lists an item's annotations).",
    )
    ALREADY_REVIEWED = (
        auto(),
        FAILED_PRECONDITION,
        "The annotation was already reviewed with another request_id.",
        "Nothing to do; read the item for the decision, or reuse the original request_id.",
    )
    NOT_REVIEWABLE = (
        auto(),
        FAILED_PRECONDITION,
        "The annotation is not a human annotation (e.g. a model pre-label), so it is not reviewed.",
        "Review the human annotations of the item.",
    )
    SELF_REVIEW = (
        auto(),
        FAILED_PRECONDITION,
        "The reviewer wrote the annotation.",
        "Have another person review it.",
    )
    # -- jobs: import, export, pre-label, label issues
    NO_SOURCE = (
        auto(),
        INVALID_ARGUMENT,
        "An import sets neither a manifest nor bad_cases, or the manifest or probabilities "
        "artifact URI is empty.",
        "Give the source artifact (or the serving endpoint for bad cases).",
    )
    BAD_MANIFEST = (
        auto(),
        INVALID_ARGUMENT,
        "A JSONL manifest line is not JSON or not a JSON object.",
        "Write one JSON object per line (the message gives the line).",
    )
    BAD_TIME = (
        auto(),
        INVALID_ARGUMENT,
        "A manifest time value is not an ISO 8601 time.",
        "Write times as ISO 8601 (e.g. 2026-12-07T12:00:00Z).",
    )
    UNSUPPORTED_COLUMN = (
        auto(),
        INVALID_ARGUMENT,
        "The import sets manifest.prelabel_column, which is not supported yet.",
        "Leave it empty; run a pre-label job (SubmitPrelabelJob) instead.",
    )
    OUTPUT_DOES_NOT_FIT = (
        auto(),
        FAILED_PRECONDITION,
        "A serving endpoint's output cannot feed this task type: pre-labels are one class "
        "(spans or boxes cannot be pre-labelled), and bad cases carry one input (not a face "
        "pair).",
        "Pre-label or import bad cases only into a task type that fits the model's output.",
    )
    NO_SERVING_SERVICE = (
        auto(),
        FAILED_PRECONDITION,
        "A pre-label or bad-case import, or an export holding labels of served predictions "
        "(sent back as ground truth), needs the serving service, and none is configured "
        "(serving.target).",
        "Configure serving.target for the labeling service.",
    )
    BAD_FORMAT = (
        auto(),
        INVALID_ARGUMENT,
        "The export format is not a known ExportFormat.",
        "Use PARQUET, JSONL or COCO.",
    )
    BAD_CURSOR = (
        auto(),
        INVALID_ARGUMENT,
        "The export's after_cursor is not a cursor an export returned.",
        "Send back a returned cursor unchanged, or none to export from the start.",
    )
    BAD_WINDOW = (
        auto(),
        INVALID_ARGUMENT,
        "The export's end_time is not after its start_time.",
        "Give an end time later than the start time.",
    )
    NO_BOXES = (
        auto(),
        FAILED_PRECONDITION,
        "A COCO export was asked of a task type without boxes.",
        "Use Parquet or JSONL for this project.",
    )
    DATASET_NEEDS_PARQUET = (
        auto(),
        INVALID_ARGUMENT,
        "An export names a dataset to register but its format is not Parquet.",
        "Use the Parquet format, or drop dataset_name.",
    )
    NO_DATA_SERVICE = (
        auto(),
        FAILED_PRECONDITION,
        "An export names a dataset to register, and no data service is configured (data.target).",
        "Configure data.target for the labeling service, or drop dataset_name.",
    )
    NOT_SINGLE_LABEL = (
        auto(),
        FAILED_PRECONDITION,
        "A label-issues job was asked of a project that is not single-label classification "
        "or face pairs.",
        "Run it on a single-label classification or face-pair project.",
    )
    # -- agreement and the correction queue
    NOTHING_TO_COMPARE = (
        auto(),
        FAILED_PRECONDITION,
        "GetAgreement: no item has two or more (not rejected) annotations to compare.",
        "Wait for overlapping annotations (project overlap >= 2).",
    )
    BAD_STATUS = (
        auto(),
        INVALID_ARGUMENT,
        "A statuses filter holds a value that is not an ItemStatus.",
        "Filter by known ItemStatus values.",
    )
    BAD_REASON = (
        auto(),
        INVALID_ARGUMENT,
        "A correction-queue filter holds a value that is not a CorrectionReason.",
        "Filter by known CorrectionReason values.",
    )

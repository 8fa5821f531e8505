"""The trainer's stable error reasons (the contract: docs/errors.md)."""

from __future__ import annotations

from enum import auto

from atlas_core.reasons import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    Reason,
)


class TrainerReason(Reason):
    """Reasons the trainer returns besides :class:`atlas_core.reasons.SharedReason`."""

    # -- job requests
    EMPTY_JOB_ID = (
        auto(),
        INVALID_ARGUMENT,
        "job_id is empty.",
        "Give a job id.",
    )
    NO_DATASET = (
        auto(),
        INVALID_ARGUMENT,
        "The spec names neither a data-service dataset nor a dataset artifact.",
        "Give dataset or dataset_artifact.",
    )
    NO_DATA_SERVICE = (
        auto(),
        FAILED_PRECONDITION,
        "The spec names a data-service dataset but this trainer has no data service configured.",
        "Pass dataset_artifact, or configure ATLAS_TRAINER_DATA__TARGET.",
    )
    LABEL_EXPORT_NOT_MATCHED = (
        auto(),
        FAILED_PRECONDITION,
        "The dataset is a labeling export (labels only, no features).",
        "Match it to a feature group first (data SubmitMatchSamplesJob, as the message shows) "
        "and train on the matched dataset.",
    )
    NO_SERVING_SERVICE = (
        auto(),
        FAILED_PRECONDITION,
        "replaces_model or register is set but this trainer has no serving service configured.",
        "Configure ATLAS_TRAINER_SERVING__TARGET (atlas up does), or drop those fields.",
    )
    BAD_REGISTER = (
        auto(),
        INVALID_ARGUMENT,
        "register.model_name or register.alias is malformed.",
        "Use [a-z][a-z0-9-]* names; an alias may not be a number.",
    )
    BAD_MODEL_REF = (
        auto(),
        INVALID_ARGUMENT,
        "replaces_model names a malformed model (name or alias).",
        "Use [a-z][a-z0-9-]* names and a version number or an alias.",
    )
    BASE_MODEL_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The model version named by replaces_model is not in the serving registry.",
        "Name a registered model and an existing version or alias (atlas deploy models).",
    )
    SERVING_AUTH_REFUSED = (
        auto(),
        FAILED_PRECONDITION,
        "The serving service refused the trainer's own token (not the caller's).",
        "Fix ATLAS_TRAINER_SERVING__TOKEN (atlas up sets it).",
    )
    SERVING_UNAVAILABLE = (
        auto(),
        UNAVAILABLE,
        "The serving service could not be reached to resolve replaces_model; nothing was stored.",
        "Retry the submission when the serving service is up.",
    )
    DASK_SCHEDULER_UNREACHABLE = (
        auto(),
        FAILED_PRECONDITION,
        "The Dask scheduler configured for distributed boosting could not be reached.",
        "Fix ATLAS_TRAINER_DASK__SCHEDULER_ADDRESS (tcp://host:8786), start the scheduler, or "
        "clear the address to use a local cluster.",
    )
    NO_TARGET = (
        auto(),
        INVALID_ARGUMENT,
        "spec.target_column is empty.",
        "Name the target column.",
    )
    UNKNOWN_TARGET = (
        auto(),
        INVALID_ARGUMENT,
        "The target column is not in the dataset.",
        "Use a column of the dataset (listed in the message).",
    )
    UNKNOWN_COLUMN = (
        auto(),
        INVALID_ARGUMENT,
        "An ignored, facet or automl.column_roles column is not in the dataset (or is the target).",
        "Use feature columns of the dataset.",
    )
    UNKNOWN_ROLE = (
        auto(),
        INVALID_ARGUMENT,
        "automl.column_roles gives a column a role that does not exist.",
        "Use numeric, categorical, datetime, text, identifier, latitude or longitude.",
    )
    EMPTY_TARGET = (
        auto(),
        INVALID_ARGUMENT,
        "The target column has no values.",
        "Train on a dataset with labels.",
    )
    CONSTANT_TARGET = (
        auto(),
        INVALID_ARGUMENT,
        "The target column has one value: nothing to learn.",
        "Train on varied labels.",
    )
    CORRUPT_PARQUET = (
        auto(),
        INVALID_ARGUMENT,
        "The training data is not readable Parquet.",
        "Upload a valid Parquet file.",
    )
    BAD_ARCHITECTURE = (
        auto(),
        INVALID_ARGUMENT,
        "deep_learning.architecture is unknown.",
        "Use mlp, cnn, mobilenet, text_cnn or embedding_bag.",
    )
    BAD_DEEP_PARAMS = (
        auto(),
        INVALID_ARGUMENT,
        "A deep_learning field (params.<name>, epochs, batch_size, workers, ...) is unknown, "
        "out of range or does not apply to the architecture.",
        "Fix the field the message names.",
    )
    BAD_DEEP_INPUT = (
        auto(),
        INVALID_ARGUMENT,
        "The data does not fit the architecture: images of mixed sizes, pixel counts that are "
        "not the image shape, empty or missing text, no usable input column.",
        "Fix the column the message names (or params.image_shape / params.text_column).",
    )
    TOO_MANY_CLASSES = (
        auto(),
        INVALID_ARGUMENT,
        "The target has more classes than a deep-learning job accepts (jobs.deep_max_classes).",
        "Group rare classes, or raise the limit in the trainer's configuration.",
    )
    UNSUPPORTED_TASK = (
        auto(),
        INVALID_ARGUMENT,
        "Deep-learning jobs classify; task_type REGRESSION is not offered for them.",
        "Use an automl job for regression.",
    )
    TOO_MANY_WORKERS = (
        auto(),
        FAILED_PRECONDITION,
        "deep_learning.workers exceeds the CPU cores of this trainer.",
        "Ask for at most as many workers as cores, or run on several machines (torchrun).",
    )
    BAD_BUDGET = (
        auto(),
        INVALID_ARGUMENT,
        "budget.wall_time is not positive or budget.max_trials is negative.",
        "Give a positive wall time and max_trials >= 0.",
    )
    NO_BUDGET = (
        auto(),
        INVALID_ARGUMENT,
        "Neither a wall-time nor a trial budget is set.",
        "Set wall_time and/or max_trials.",
    )
    BAD_STACKING = (
        auto(),
        INVALID_ARGUMENT,
        "automl.stacking is not a StackingMode or automl.stack_levels is out of range.",
        "Use STACKING_MODE_AUTO, _OFF or _ON, and stack_levels 0 (the default) or 1.",
    )
    BAD_STRATEGY = (
        auto(),
        INVALID_ARGUMENT,
        "Unknown search strategy.",
        "Use one listed in the message.",
    )
    BAD_FAMILY = (
        auto(),
        INVALID_ARGUMENT,
        "Unknown model families in the search space.",
        "Use the families listed in the message.",
    )
    STUDY_MISMATCH = (
        auto(),
        INVALID_ARGUMENT,
        "The named study exists with another optimisation direction, metric or dataset.",
        "Use a new study name, or join it with the same metric and dataset.",
    )
    BAD_STUDY_NAME = (
        auto(),
        INVALID_ARGUMENT,
        "automl.study_name is malformed.",
        "Use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit.",
    )
    INVALID_RESOURCES = (
        auto(),
        INVALID_ARGUMENT,
        "The resource request is malformed (problems listed in the message).",
        "Fix the request.",
    )
    CPU_REQUEST_TOO_LARGE = (
        auto(),
        RESOURCE_EXHAUSTED,
        "The job asks for more CPUs than this trainer has.",
        "Ask for fewer CPUs.",
    )
    GPU_REQUEST_TOO_LARGE = (
        auto(),
        RESOURCE_EXHAUSTED,
        "The job asks for more GPUs than this trainer has.",
        "Ask for fewer GPUs (0 trains on CPU).",
    )
    NOT_ENOUGH_GPUS = (
        auto(),
        FAILED_PRECONDITION,
        "resources.gpus exceeds the GPUs this trainer has.",
        "Ask for fewer GPUs, or run on a GPU trainer.",
    )
    INVALID_INTERVAL = (
        auto(),
        INVALID_ARGUMENT,
        "The resource sampling interval is not positive.",
        "Give a positive interval.",
    )
    # -- task and target checks (while the job runs: JobStatus.error)
    BAD_TASK = (
        auto(),
        INVALID_ARGUMENT,
        "Unknown task, or a binary task on a target with other than two classes.",
        "Choose the task that fits the target.",
    )
    UNKNOWN_METRIC = (
        auto(),
        INVALID_ARGUMENT,
        "Unknown metric.",
        "Use one listed in the message.",
    )
    BAD_METRIC = (
        auto(),
        INVALID_ARGUMENT,
        "The metric does not fit the task (classification vs regression).",
        "Choose a metric of the task.",
    )
    TARGET_MISSING = (
        auto(),
        INVALID_ARGUMENT,
        "The target column is not in the training frame.",
        "Name a column of the dataset.",
    )
    TARGET_ALL_NAN = (
        auto(),
        INVALID_ARGUMENT,
        "The target column is all missing.",
        "Train on labelled rows.",
    )
    TARGET_CONSTANT = (
        auto(),
        INVALID_ARGUMENT,
        "The target is constant, or has fewer than two classes with 2+ rows.",
        "Train on varied labels.",
    )
    TARGET_NOT_NUMERIC = (
        auto(),
        INVALID_ARGUMENT,
        "Regression on a non-numeric target.",
        "Use a classification task or a numeric target.",
    )
    TOO_FEW_ROWS = (
        auto(),
        INVALID_ARGUMENT,
        "Too few usable rows to train.",
        "Add rows (minimum in the message).",
    )
    # -- results, explanations and reports
    JOB_NOT_FINISHED = (
        auto(),
        FAILED_PRECONDITION,
        "The training job has no result yet.",
        "Wait until it succeeds.",
    )
    MODEL_NOT_KEPT = (
        auto(),
        FAILED_PRECONDITION,
        "Only the job's final model is kept; another trial was asked for.",
        "Explain the final model.",
    )
    NO_ROWS = (
        auto(),
        INVALID_ARGUMENT,
        "No rows to explain or score.",
        "Send 1..1000 rows.",
    )
    TOO_MANY_ROWS = (
        auto(),
        INVALID_ARGUMENT,
        "More rows than one call may explain.",
        "Send at most 1000 rows.",
    )
    INVALID_ROW_COUNT = (
        auto(),
        INVALID_ARGUMENT,
        "The number of rows to explain is out of range.",
        "Send 1..the limit rows.",
    )
    UNSUPPORTED_VALUE = (
        auto(),
        INVALID_ARGUMENT,
        "A row holds a vector where a scalar is needed.",
        "Send scalar feature values.",
    )
    LABELS_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "Permutation importance without labels.",
        "Send the labels.",
    )
    BACKGROUND_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "Permutation explanations without background rows.",
        "Send background rows.",
    )
    INVALID_METRIC = (
        auto(),
        INVALID_ARGUMENT,
        "Unknown importance metric, or a classifier metric for a regressor.",
        "Use a metric listed in the message.",
    )
    INVALID_STORAGE_URL = (
        auto(),
        INVALID_ARGUMENT,
        "The dashboard was given something that is not a storage URL.",
        "Pass a storage URL (s3://... or a path).",
    )
    NO_META_FEATURES = (
        auto(),
        INVALID_ARGUMENT,
        "Similar-study search without a dataset or meta-features.",
        "Give one of them.",
    )
    # -- bias metrics
    NO_FACET = (
        auto(),
        INVALID_ARGUMENT,
        "facet_column is empty.",
        "Name the facet column.",
    )
    COLUMN_NOT_FOUND = (
        auto(),
        INVALID_ARGUMENT,
        "The label or facet column is not in the dataset.",
        "Use columns of the dataset.",
    )
    EMPTY_COLUMN = (
        auto(),
        INVALID_ARGUMENT,
        "The label or facet column has no values.",
        "Use a column with values.",
    )
    FACET_VALUE_NOT_FOUND = (
        auto(),
        INVALID_ARGUMENT,
        "A requested facet value does not occur in the facet column.",
        "Use values listed in the message.",
    )
    TOO_MANY_FACET_VALUES = (
        auto(),
        INVALID_ARGUMENT,
        "The facet column has too many distinct values to compare.",
        "Choose facet values or a coarser column.",
    )
    DEGENERATE_LABELS = (
        auto(),
        INVALID_ARGUMENT,
        "The labels are all positive or all negative for the chosen positive label.",
        "Check positive_label, or use varied labels.",
    )
    BAD_NAS_SPEC = (
        auto(),
        INVALID_ARGUMENT,
        "deep_learning.nas is out of range: an unknown choice (activation, even kernel size), a "
        "limit at or below 0 or below the smallest sub-network, population or generations out "
        "of range, an architecture without a supernet, or workers > 1.",
        "Fix the field the message names.",
    )

"""The serving service's stable error reasons (the contract: docs/errors.md)."""

from __future__ import annotations

from enum import auto

from atlas_core.reasons import (
    ABORTED,
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    Reason,
)


class ServingReason(Reason):
    """Reasons the serving service returns besides :class:`atlas_core.reasons.SharedReason`."""

    # -- model registry
    BAD_NAME = (
        auto(),
        INVALID_ARGUMENT,
        "A model or endpoint name does not match [a-z][a-z0-9-]* (max 128).",
        "Use a lowercase name of that form.",
    )
    BUNDLE_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "bundle.uri is missing.",
        "Give the bundle URI a trainer job returned.",
    )
    BAD_BUNDLE_REF = (
        auto(),
        INVALID_ARGUMENT,
        "bundle.sha256 is not 64 hex digits, or the bundle does not hold it.",
        "Send the reference exactly as the trainer returned it.",
    )
    MODEL_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No model has this name.",
        "Check the name (ListModels), or register a version first.",
    )
    VERSION_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The model has no such version (or no versions).",
        "Check the version (ListModelVersions).",
    )
    ALIAS_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "alias is empty.",
        "Give the alias.",
    )
    BAD_ALIAS = (
        auto(),
        INVALID_ARGUMENT,
        "The alias does not match [a-z][a-z0-9-]* or is a number.",
        "Use a lowercase word.",
    )
    ALIAS_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The model has no such alias.",
        "Check the alias, or set it first.",
    )
    ALIAS_IN_USE = (
        auto(),
        FAILED_PRECONDITION,
        "Endpoints serve the model through this alias, so it cannot be removed.",
        "Move the endpoints to another alias or version first.",
    )
    VERSION_IN_USE = (
        auto(),
        FAILED_PRECONDITION,
        "Endpoints serve this version, so it cannot be deleted.",
        "Deploy another version to them first.",
    )
    VERSION_ALIASED = (
        auto(),
        FAILED_PRECONDITION,
        "Aliases point at this version, so it cannot be deleted.",
        "Move or remove the aliases first.",
    )
    # -- endpoints and deployments
    NAME_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "The endpoint name is missing (or the first stream message does not name it).",
        "Name the endpoint.",
    )
    ID_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "A required id (deployment, alert, job) is empty.",
        "Give the id.",
    )
    INVALID_SPEC = (
        auto(),
        INVALID_ARGUMENT,
        "The endpoint spec is invalid (the message says which field).",
        "Fix the spec.",
    )
    ENDPOINT_EXISTS = (
        auto(),
        ALREADY_EXISTS,
        "An endpoint of that name exists.",
        "Update it, or use another name.",
    )
    ENDPOINT_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No endpoint has this name.",
        "Check the name (ListEndpoints).",
    )
    ETAG_MISMATCH = (
        auto(),
        ABORTED,
        "The endpoint changed since the etag the caller read.",
        "Re-read the endpoint and retry with its new etag.",
    )
    BUNDLE_REJECTED = (
        auto(),
        FAILED_PRECONDITION,
        "A variant's bundle cannot be served (the message says why).",
        "Register a servable bundle, or fix its schema.",
    )
    INVALID_POLICY = (
        auto(),
        INVALID_ARGUMENT,
        "A rollout policy is out of range (percent, bake time, step).",
        "Fix the policy fields named in the message.",
    )
    INVALID_ALARMS = (
        auto(),
        INVALID_ARGUMENT,
        "alarms.max_error_rate is outside [0, 1].",
        "Give a rate in [0, 1].",
    )
    VARIANT_NAME_IN_USE = (
        auto(),
        INVALID_ARGUMENT,
        "A gradual rollout reuses the name of a variant already serving.",
        "Give the new variants new names.",
    )
    DEPLOYMENT_IN_PROGRESS = (
        auto(),
        ABORTED,
        "The endpoint has a deployment in progress.",
        "Wait for it, or cancel it first.",
    )
    DEPLOYMENT_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No deployment has this id.",
        "Check the id.",
    )
    NO_PREVIOUS_DEPLOYMENT = (
        auto(),
        FAILED_PRECONDITION,
        "Rollback without a previous deployment (or previous variants).",
        "Deploy explicitly instead.",
    )
    ALARM = (
        auto(),
        ABORTED,
        "In a deployment's error only: an alarm fired and the rollout was rolled back.",
        "Read the alarm events; fix the new variant before deploying again.",
    )
    # -- prediction
    NO_LIVE_VARIANT = (
        auto(),
        FAILED_PRECONDITION,
        "The endpoint has no live variant to serve.",
        "Deploy a model to the endpoint.",
    )
    UNKNOWN_VARIANT = (
        auto(),
        INVALID_ARGUMENT,
        "The requested variant is not live on the endpoint.",
        "Use a live variant name, or leave it empty.",
    )
    ENDPOINT_CHANGED = (
        auto(),
        INVALID_ARGUMENT,
        "A prediction stream message names another endpoint than the first.",
        "Open one stream per endpoint.",
    )
    NO_ROWS = (
        auto(),
        INVALID_ARGUMENT,
        "No rows to predict (or the input artifact is empty).",
        "Send at least one row.",
    )
    TOO_MANY_ROWS = (
        auto(),
        INVALID_ARGUMENT,
        "More rows than one call may carry.",
        "Use input_artifact for large batches (limit in the message).",
    )
    ROWS_AND_ARTIFACT = (
        auto(),
        INVALID_ARGUMENT,
        "The request sends rows and an input artifact.",
        "Send one of them.",
    )
    BAD_INPUT_ARTIFACT = (
        auto(),
        INVALID_ARGUMENT,
        "input_artifact is not a readable Parquet file.",
        "Upload a valid Parquet file.",
    )
    ENDPOINT_AT_CAPACITY = (
        auto(),
        RESOURCE_EXHAUSTED,
        "The endpoint's concurrency limit and queue are full, or no slot freed within "
        "capacity.queue_timeout_ms or the call's deadline (the load is beyond what the "
        "replica serves).",
        "Retry with exponential backoff; if it persists, raise capacity.max_concurrency / "
        "max_queue (UpdateEndpoint) or add replicas.",
    )
    REPLICA_OVERLOADED = (
        auto(),
        RESOURCE_EXHAUSTED,
        "The serving replica's event loop is behind by more than capacity.max_loop_lag_ms: "
        "calls wait before any endpoint admits them, so new predictions are refused at once.",
        "Retry with exponential backoff (another replica may answer); add replicas or lower "
        "the offered load.",
    )
    NO_DATA_SERVICE = (
        auto(),
        (FAILED_PRECONDITION, UNAVAILABLE),
        "The endpoint uses feature lookup but no data service is configured.",
        "Configure data.target on the serving replicas, or send the features.",
    )
    FEATURE_LOOKUP_FAILED = (
        auto(),
        UNAVAILABLE,
        "The feature lookup from the data service failed.",
        "Retry; check the data service.",
    )
    FEATURE_LOOKUP_UNAVAILABLE = (
        auto(),
        UNAVAILABLE,
        "The data service did not answer the feature lookup in time.",
        "Retry with backoff.",
    )
    ENTITY_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The entity has no online features for this endpoint.",
        "Check the key, or materialise its features.",
    )
    # -- monitoring
    BAD_WINDOW = (
        auto(),
        INVALID_ARGUMENT,
        "A drift or stats window is not positive.",
        "Give a positive window.",
    )
    INVERTED_WINDOW = (
        auto(),
        INVALID_ARGUMENT,
        "end_time is before start_time.",
        "Swap or fix the times.",
    )
    BAD_THRESHOLD = (
        auto(),
        INVALID_ARGUMENT,
        "A drift threshold is negative, or a bad-case threshold or limit is out of range "
        "(max_confidence and min_drift_score in [0, 1], regression_tolerance and max_items "
        ">= 0, batch_size 0..1000).",
        "Give values in range (the message names the field).",
    )
    CAPTURE_DISABLED = (
        auto(),
        FAILED_PRECONDITION,
        "The endpoint does not capture data.",
        "Enable capture in the endpoint spec.",
    )
    NO_TRAINING_STATS = (
        auto(),
        FAILED_PRECONDITION,
        "The served bundle has no training statistics to compare against.",
        "Serve a bundle built with statistics (any recent trainer job).",
    )
    NO_REASONS = (
        auto(),
        INVALID_ARGUMENT,
        "A bad-case selection names no reason (or BAD_CASE_REASON_UNSPECIFIED).",
        "Give at least one of LOW_CONFIDENCE, HIGH_DRIFT, SHADOW_DISAGREEMENT, "
        "WRONG_BY_GROUND_TRUTH.",
    )
    PROJECT_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "A bad-case selection names no labeling project.",
        "Set bad_cases.labeling_project_id (create the project in labeling first).",
    )
    LABELING_PROJECT_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The labeling service has no project with the id a bad-case selection names.",
        "Check the id (atlas label projects).",
    )
    NO_LABELING_SERVICE = (
        auto(),
        FAILED_PRECONDITION,
        "A bad-case job imports into the labeling service, and none is configured "
        "(labeling.target).",
        "Configure labeling.target for the serving service (atlas up sets it).",
    )
    NO_CONFIDENCE = (
        auto(),
        FAILED_PRECONDITION,
        "LOW_CONFIDENCE was asked of a regression model, which has no class probabilities.",
        "Use HIGH_DRIFT, SHADOW_DISAGREEMENT or WRONG_BY_GROUND_TRUTH for regression.",
    )
    BAD_CASE_CONTENT = (
        auto(),
        INVALID_ARGUMENT,
        "A bad case cannot become an item of the labeling project: content_feature is not "
        "captured, the project's task needs an image the row does not name, or face-pair "
        "projects (two images) were asked for.",
        "Name a captured feature that holds the content the project's task type needs.",
    )
    ALERT_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No alert has this id.",
        "Check the id (ListAlerts).",
    )
    # -- ground truth and model quality
    QUALITY_DISABLED = (
        auto(),
        FAILED_PRECONDITION,
        "The endpoint does not record predictions, so ground truth cannot be attached.",
        "Enable quality in the endpoint spec (UpdateEndpoint); later predictions are recorded.",
    )
    NO_ITEMS = (
        auto(),
        INVALID_ARGUMENT,
        "A ground truth call (or stream message) carries no items.",
        "Send at least one item.",
    )
    TOO_MANY_ITEMS = (
        auto(),
        INVALID_ARGUMENT,
        "More ground truth items than one call (or stream message) may carry.",
        "Split them (limit in the message), or use AttachGroundTruthStream.",
    )
    TARGET_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "In an item's result: the item names neither a prediction id nor an entity.",
        "Set prediction.prediction_id or entity.entity_id.",
    )
    OUTCOME_REQUIRED = (
        auto(),
        INVALID_ARGUMENT,
        "In an item's result: the item has no outcome.",
        "Set outcome.",
    )
    BAD_ROW = (
        auto(),
        INVALID_ARGUMENT,
        "In an item's result: prediction.row is negative.",
        "Give the row index of the batch prediction (0 for unary predictions).",
    )
    PREDICTION_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "In an item's result: no recorded prediction of this endpoint has the id and row "
        "(unknown id, another endpoint, or a prediction not sampled by quality).",
        "Check the id and row as Predict returned them, and the endpoint.",
    )
    PREDICTION_NOT_INDEXED = (
        auto(),
        UNAVAILABLE,
        "In an item's result: the prediction id is seconds old and not in the index yet (another "
        "replica may still buffer it, or it was not sampled by quality).",
        "Retry the item after a few seconds (quality.flush_seconds); a second refusal is final.",
    )
    PREDICTION_EXPIRED = (
        auto(),
        NOT_FOUND,
        "In an item's result: the prediction is older than quality.retention_days.",
        "Nothing: outcomes must arrive within the retention window.",
    )
    NO_MATCHING_PREDICTIONS = (
        auto(),
        NOT_FOUND,
        "In an item's result: the entity has no recorded prediction in the time window.",
        "Check the entity id and the window (prediction times, end exclusive).",
    )
    WRONG_OUTCOME_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "In an item's result: the outcome's type does not fit the model (a number for "
        "regression; text, an integer or a bool for classification).",
        "Send the outcome with the type the model's task needs.",
    )
    UNKNOWN_METRIC = (
        auto(),
        INVALID_ARGUMENT,
        "The metric is not one of the model task's quality metrics.",
        "Use auc, accuracy or log_loss (classification), rmse or mae (regression).",
    )
    QUALITY_GATE_UNDECIDED = (
        auto(),
        ABORTED,
        "In a deployment's error only: the quality gate had too few labeled predictions when "
        "the step's hold ended, and on_insufficient_labels is ROLL_BACK.",
        "Send ground truth sooner, lower min_labeled, or lengthen the step.",
    )
    INSUFFICIENT_TRAFFIC = (
        auto(),
        ABORTED,
        "In a deployment's error only: a canary or linear step watched by alarms ended its "
        "extended bake with a new variant that served fewer than min_requests requests, so "
        "there was no evidence to promote on.",
        "Send traffic to the endpoint during the rollout, lower alarms.min_requests, or "
        "lengthen the bake.",
    )
    NOT_PROMOTED = (
        auto(),
        ABORTED,
        "In a deployment's error only: a promote-if-better challenger was significantly worse, "
        "or max_duration passed without a significant gain; the previous variants serve.",
        "Read the message (difference and interval); improve the model or wait for more labels.",
    )

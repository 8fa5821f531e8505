"""The data service's stable error reasons (the contract: docs/errors.md)."""

from __future__ import annotations

from enum import auto

from atlas_core.reasons import (
    ALREADY_EXISTS,
    DATA_LOSS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    Reason,
)


class DataReason(Reason):
    """Reasons the data service returns besides :class:`atlas_core.reasons.SharedReason`."""

    # -- feature groups
    EMPTY_NAME = (
        auto(),
        INVALID_ARGUMENT,
        "A feature group, dataset or feature name is empty.",
        "Give a name.",
    )
    INVALID_SPEC = (
        auto(),
        INVALID_ARGUMENT,
        "The feature group spec has an unspecified entity key type or feature dtype.",
        "Set entity_key_type and every feature's dtype.",
    )
    DUPLICATE_FEATURE = (
        auto(),
        INVALID_ARGUMENT,
        "The request lists the same feature twice.",
        "List each feature once.",
    )
    FEATURE_GROUP_EXISTS = (
        auto(),
        ALREADY_EXISTS,
        "A feature group of that name already exists.",
        "Set new_version to create the next version, or use another name.",
    )
    FEATURE_GROUP_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The feature group (or that version of it) does not exist.",
        "Check the name and version (ListFeatureGroups).",
    )
    FEATURE_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "A named feature is not in the feature group.",
        "Use a feature the group's spec declares.",
    )
    ENTITY_KEY_TYPE_CHANGED = (
        auto(),
        FAILED_PRECONDITION,
        "A new feature group version would change the entity key type.",
        "Keep the key type, or create a new feature group.",
    )
    GROUP_IN_USE = (
        auto(),
        FAILED_PRECONDITION,
        "A running job uses the feature group, so it cannot be deleted.",
        "Cancel the job or wait for it to finish.",
    )
    # -- ingestion
    NO_INPUT = (
        auto(),
        INVALID_ARGUMENT,
        "An ingest or dataset source lists no Parquet files.",
        "Give at least one Parquet artifact.",
    )
    CORRUPT_PARQUET = (
        auto(),
        INVALID_ARGUMENT,
        "An input artifact is not a readable Parquet file.",
        "Upload a valid Parquet file.",
    )
    SCHEMA_MISMATCH = (
        auto(),
        INVALID_ARGUMENT,
        "The input files have schemas that do not combine.",
        "Give files with one schema.",
    )
    UNKNOWN_COLUMN = (
        auto(),
        INVALID_ARGUMENT,
        "A named column (label, stratify, group, time...) is not in the files or dataset.",
        "Use a column the input has (listed in the message).",
    )
    NULL_KEY = (
        auto(),
        INVALID_ARGUMENT,
        "The entity key column has null values.",
        "Give every row an entity key.",
    )
    NULL_TIMESTAMP = (
        auto(),
        INVALID_ARGUMENT,
        "A time column has null values.",
        "Give every row a time.",
    )
    BAD_KEY = (
        auto(),
        INVALID_ARGUMENT,
        "The entity key column does not convert to int64 for an INT64-keyed group.",
        "Send integer keys or use a STRING-keyed group.",
    )
    BAD_DTYPE = (
        auto(),
        INVALID_ARGUMENT,
        "A feature column cannot be read as its declared dtype (or vector length).",
        "Fix the source column or the feature's dtype.",
    )
    BAD_VECTOR_LENGTH = (
        auto(),
        INVALID_ARGUMENT,
        "A vector feature row has the wrong number of values.",
        "Send exactly the declared number of values.",
    )
    BAD_TIMESTAMP_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "A time column is neither a timestamp, int64 microseconds nor ISO-8601 text.",
        "Convert the column to one of those.",
    )
    UNPARSEABLE_TIMESTAMP = (
        auto(),
        INVALID_ARGUMENT,
        "A time value cannot be parsed (row in the message).",
        "Fix the value.",
    )
    SEQUENCE_NOT_INCREASING = (
        auto(),
        INVALID_ARGUMENT,
        "PutRecords: a message's sequence number does not increase.",
        "Resume from the last acknowledged sequence + 1.",
    )
    STREAM_TOO_LARGE = (
        auto(),
        RESOURCE_EXHAUSTED,
        "A PutRecords stream exceeds ingest.max_stream_bytes.",
        "Split it into several streams, or use WriteRecords.",
    )
    # -- online store
    INVALID_KEYS = (
        auto(),
        INVALID_ARGUMENT,
        "entity_keys sets both int64_keys and string_keys.",
        "Set one of them.",
    )
    BAD_KEY_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "The keys sent are not of the feature group's key type.",
        "Send int64_keys or string_keys as the group declares.",
    )
    NO_ENTITIES = (
        auto(),
        INVALID_ARGUMENT,
        "entity_keys is empty.",
        "Send at least one key.",
    )
    TOO_MANY_ENTITIES = (
        auto(),
        INVALID_ARGUMENT,
        "More entity keys than one call may read.",
        "Split the request (limit in the message).",
    )
    ONLINE_STORE_UNAVAILABLE = (
        auto(),
        UNAVAILABLE,
        "The online store (LMDB or Redis) cannot be opened or reached.",
        "Retry; check the store's path or URL.",
    )
    DASK_UNAVAILABLE = (
        auto(),
        UNAVAILABLE,
        "A matching job cannot reach the Dask scheduler set in dask.scheduler_address.",
        "Start the scheduler or fix the address; retry the job.",
    )
    MATCH_SHARD_LOST = (
        auto(),
        UNAVAILABLE,
        "A shard of a Dask matching job failed on the cluster (its worker kept dying); the "
        "job published nothing.",
        "Retry the job; check the Dask workers' memory and logs (the shard is named).",
    )
    MATCH_MEMORY_BUDGET = (
        auto(),
        FAILED_PRECONDITION,
        "An out-of-core matching job's memory budget is below what one bucket of the join "
        "needs (the message and the needed_bytes metadata give the size); the job published "
        "nothing.",
        "Raise matching.memory_budget_bytes to at least the size given, or run the job on a "
        "machine with more memory.",
    )
    ONLINE_SHARD_UNAVAILABLE = (
        auto(),
        UNAVAILABLE,
        "A node of the sharded online store (Redis Cluster or consistent hash) holding some of "
        "the requested entities cannot be reached; entities on other nodes are still served.",
        "Retry, or read the other entities; restore the node named in the message (or set "
        "online.redis_shard_down=not_found to read its entities as missing).",
    )
    ONLINE_STORE_FULL = (
        auto(),
        RESOURCE_EXHAUSTED,
        "The online store is out of space (LMDB map size, Redis maxmemory).",
        "Raise the store's limit.",
    )
    ONLINE_SCHEMA_MISMATCH = (
        auto(),
        FAILED_PRECONDITION,
        "An online record was written with another schema version of the group.",
        "Re-materialise the group's online store.",
    )
    CORRUPT_ONLINE_RECORD = (
        auto(),
        DATA_LOSS,
        "An online record cannot be decoded.",
        "Re-materialise the group's online store.",
    )
    ONLINE_READER_FAILED = (
        auto(),
        UNAVAILABLE,
        "The native online reader process did not start.",
        "Read the message; the service falls back to Python reads when it is not installed.",
    )
    # -- matching (point-in-time joins)
    NO_SAMPLES = (
        auto(),
        INVALID_ARGUMENT,
        "A matching spec has neither a sample source nor spine_free.",
        "Give sample_source (artifact or dataset) or spine_free.",
    )
    NO_FEATURES = (
        auto(),
        INVALID_ARGUMENT,
        "A matching spec selects no feature group.",
        "Select at least one feature group.",
    )
    INVERTED_WINDOW = (
        auto(),
        INVALID_ARGUMENT,
        "spec.end_time is not after spec.start_time.",
        "Swap or fix the times.",
    )
    BAD_WINDOW = (
        auto(),
        INVALID_ARGUMENT,
        "A spine window is empty (end not after start).",
        "Give end_time after start_time.",
    )
    BAD_SAMPLING = (
        auto(),
        INVALID_ARGUMENT,
        "Unknown spine sampling mode.",
        "Use every_record, latest_per_entity or fixed_interval.",
    )
    BAD_INTERVAL = (
        auto(),
        INVALID_ARGUMENT,
        "fixed_interval sampling needs an interval > 0.",
        "Give a positive interval.",
    )
    SPINE_TOO_LARGE = (
        auto(),
        INVALID_ARGUMENT,
        "fixed_interval sampling would make more samples than allowed.",
        "Narrow the window or widen the interval.",
    )
    ENTITY_TYPE_MISMATCH = (
        auto(),
        INVALID_ARGUMENT,
        "The sample entity column does not convert to the group's key type.",
        "Send sample keys of the group's key type.",
    )
    COLUMN_COLLISION = (
        auto(),
        INVALID_ARGUMENT,
        "A joined feature column has the name of a sample column.",
        "Set a column prefix.",
    )
    BAD_TTL = (
        auto(),
        INVALID_ARGUMENT,
        "ttl is negative.",
        "Give ttl >= 0 seconds (0: no limit).",
    )
    # -- datasets
    EMPTY_DATASET_ID = (
        auto(),
        INVALID_ARGUMENT,
        "The dataset id is empty.",
        "Give a dataset id.",
    )
    INVALID_DATASET_NAME = (
        auto(),
        INVALID_ARGUMENT,
        "The dataset name has no usable characters.",
        "Use letters, digits, '-' or '_'.",
    )
    DATASET_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The dataset (or that version) does not exist.",
        "Check the id and version (ListDatasets).",
    )
    BAD_PARENT = (
        auto(),
        INVALID_ARGUMENT,
        "A lineage parent kind is not accepted for datasets.",
        "Use dataset or feature-group parents.",
    )
    NO_OPERATION = (
        auto(),
        INVALID_ARGUMENT,
        "A derive spec has no operation.",
        "Give one of merge, sample, filter, split, project.",
    )
    INCOMPATIBLE_SCHEMA = (
        auto(),
        INVALID_ARGUMENT,
        "Datasets to merge do not share one schema.",
        "Merge datasets with the same columns and types.",
    )
    BAD_SAMPLE_SIZE = (
        auto(),
        INVALID_ARGUMENT,
        "Sampling needs exactly one of fraction in (0, 1] or rows in [1, n].",
        "Give one valid size.",
    )
    MISSING_STRATIFY_COLUMN = (
        auto(),
        INVALID_ARGUMENT,
        "Stratified sampling without a stratify column.",
        "Name the stratify column.",
    )
    BAD_SPLIT_FRACTIONS = (
        auto(),
        INVALID_ARGUMENT,
        "Split fractions are outside [0, 1] or do not sum to 1.",
        "Give fractions in [0, 1] summing to 1.",
    )
    BAD_SPLIT_MODE = (
        auto(),
        INVALID_ARGUMENT,
        "A split names more than one of stratify, group and time columns.",
        "Choose one.",
    )
    BAD_PROJECTION = (
        auto(),
        INVALID_ARGUMENT,
        "A projection keeps and drops columns, lists one twice, or drops all.",
        "Give one non-empty list of distinct columns.",
    )
    BAD_FILTER = (
        auto(),
        INVALID_ARGUMENT,
        "The filter expression is malformed, too long or uses an unsupported construct.",
        "Fix the expression (docs/data.md lists the grammar).",
    )
    # -- jobs
    EMPTY_JOB_ID = (
        auto(),
        INVALID_ARGUMENT,
        "job_id is empty.",
        "Give a job id.",
    )

"""The graph service's stable error reasons (the contract: docs/errors.md)."""

from __future__ import annotations

from enum import auto

from atlas_core.reasons import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    Reason,
)


class GraphReason(Reason):
    """Reasons the graph service returns besides :class:`atlas_core.reasons.SharedReason`."""

    # -- graphs
    EMPTY_ID = (
        auto(),
        INVALID_ARGUMENT,
        "A graph_id, partitioning_id or other required id is empty.",
        "Give the id.",
    )
    GRAPH_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "No graph has this id.",
        "Check the id (ListGraphs).",
    )
    PARTITIONING_NOT_FOUND = (
        auto(),
        NOT_FOUND,
        "The graph has no such partitioning (or it lacks the requested ranges).",
        "Check the id, or partition the graph first.",
    )
    GRAPH_IN_USE = (
        auto(),
        FAILED_PRECONDITION,
        "A running job uses the graph, so it cannot be deleted.",
        "Cancel the job or wait for it to finish.",
    )
    NO_SPEC = (
        auto(),
        INVALID_ARGUMENT,
        "A job request sets none of import_graph, generate_graph, partition_graph, train, infer.",
        "Set one.",
    )
    # -- import
    NO_INPUT = (
        auto(),
        INVALID_ARGUMENT,
        "A node or edge table source lists no files.",
        "Give at least one file.",
    )
    NO_EDGES = (
        auto(),
        INVALID_ARGUMENT,
        "An import has no edge table, or the edge tables are empty.",
        "Give at least one non-empty edge table.",
    )
    UNREADABLE_TABLE = (
        auto(),
        INVALID_ARGUMENT,
        "A node or edge file is not readable in its declared format.",
        "Upload a valid Parquet or CSV file.",
    )
    UNKNOWN_COLUMN = (
        auto(),
        INVALID_ARGUMENT,
        "A named column is not in the table.",
        "Use a column the table has (listed in the message).",
    )
    NULL_IDS = (
        auto(),
        INVALID_ARGUMENT,
        "An id column has null values.",
        "Give every row an id.",
    )
    WRONG_ID_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "Ids are strings but the graph's id type is INT64 (or the reverse).",
        "Use ID_TYPE_STRING, or send ids of the graph's type.",
    )
    DUPLICATE_NODE = (
        auto(),
        INVALID_ARGUMENT,
        "A node id appears more than once in the node table.",
        "Make node ids unique.",
    )
    DANGLING_EDGE = (
        auto(),
        INVALID_ARGUMENT,
        "An edge references a node that is not in the node table.",
        "Add the node or drop the edge.",
    )
    HETEROGENEOUS = (
        auto(),
        INVALID_ARGUMENT,
        "Several untyped node tables, or R-GCN asked on a homogeneous graph.",
        "Give every table its node_type / edge_type; R-GCN needs a typed graph.",
    )
    UNKNOWN_NODE_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "A typed import's edge table has no edge_type (its endpoint types are unknown), a "
        "relation names a node type without a node table, or a node table has no node_type.",
        "Give every edge table 'src_type:relation:dst_type' and every named type a node table.",
    )
    BAD_EDGE_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "An edge_type is not 'src_type:relation:dst_type'.",
        "Give three names separated by ':'.",
    )
    BAD_NODE_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "A node_type is not a name ([A-Za-z_][A-Za-z0-9_]*).",
        "Rename the type.",
    )
    DUPLICATE_NODE_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "Two node tables have the same node_type.",
        "Give one node table per type (concatenate the files in its source).",
    )
    MIXED_ID_TYPES = (
        auto(),
        INVALID_ARGUMENT,
        "An edge column holds ids of another type (int64 vs string) than its node type's ids.",
        "Use one id type per node type in its node table and every edge column naming it.",
    )
    UNKNOWN_TARGET_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "train.target_node_type is not a node type of the graph, is missing on a graph with "
        "several labelled types, or is set on a homogeneous graph.",
        "Name a node type of the graph (GetGraph lists them).",
    )
    UNKNOWN_EDGE_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "train.link_prediction.target_edge_type is missing on a heterogeneous graph, is not "
        "one of its canonical edge types, or is set on a homogeneous graph.",
        "Name an edge type of the graph as src:rel:dst (GetGraph lists them).",
    )
    NO_TARGET_LABELS = (
        auto(),
        INVALID_ARGUMENT,
        "The target node type of a heterogeneous train job has no labels.",
        "Pick a labelled type, or import its node table with a label_column.",
    )
    BAD_FEATURE = (
        auto(),
        INVALID_ARGUMENT,
        "A feature column is neither numeric nor a float vector.",
        "Convert it to numbers.",
    )
    BAD_MASK = (
        auto(),
        INVALID_ARGUMENT,
        "A train/val/test mask column is not boolean.",
        "Use boolean mask columns.",
    )
    MISSING_MASK = (
        auto(),
        INVALID_ARGUMENT,
        "val/test masks were given without a train mask.",
        "Give train_mask_column too.",
    )
    # -- generation
    BAD_NODES = (
        auto(),
        INVALID_ARGUMENT,
        "A generated graph needs at least 2 nodes.",
        "Ask for 2 or more nodes.",
    )
    BAD_COMMUNITIES = (
        auto(),
        INVALID_ARGUMENT,
        "generate_graph.communities is outside 1..nodes.",
        "Give 1..nodes communities.",
    )
    BAD_FRACTION = (
        auto(),
        INVALID_ARGUMENT,
        "generate_graph.intra_fraction is outside (0, 1].",
        "Give a fraction in (0, 1].",
    )
    BAD_SIZE = (
        auto(),
        INVALID_ARGUMENT,
        "A size (degree, feature dims, epochs, batch size, trainers) is out of range.",
        "Give positive (or non-negative, as the message says) sizes.",
    )
    # -- partitioning
    BAD_PARTITIONS = (
        auto(),
        INVALID_ARGUMENT,
        "num_partitions is below 1.",
        "Ask for at least one partition.",
    )
    TOO_MANY_PARTITIONS = (
        auto(),
        INVALID_ARGUMENT,
        "num_partitions exceeds the number of nodes.",
        "Ask for fewer partitions.",
    )
    PARTITION_MEMORY = (
        auto(),
        RESOURCE_EXHAUSTED,
        "Partitioning would need more memory than the configured limit.",
        "Raise the limit or partition on a larger machine.",
    )
    BAD_RANGES = (
        auto(),
        INVALID_ARGUMENT,
        "Partitioning produced non-contiguous id ranges (a DGL fault).",
        "Report it; retry with another partition count.",
    )
    BAD_BOUNDARIES = (
        auto(),
        INVALID_ARGUMENT,
        "Stored id range boundaries are not increasing from 0.",
        "Re-partition the graph.",
    )
    # -- training and inference
    NOT_TRAINABLE = (
        auto(),
        FAILED_PRECONDITION,
        "The graph has no labels or no node features to train on.",
        "Import labels and features (or generate a graph with them).",
    )
    BAD_FEATURE_GROUP = (
        auto(),
        INVALID_ARGUMENT,
        "train.embeddings_feature_group is not a feature group name ([a-z][a-z0-9_]*).",
        "Use lower-case letters, digits and underscores, starting with a letter.",
    )
    NO_DATA_SERVICE = (
        auto(),
        FAILED_PRECONDITION,
        "A train job asks for embeddings in a feature group but the graph service has no data "
        "client.",
        "Set ATLAS_GRAPH_DATA__TARGET and __TOKEN (atlas up sets them), or drop the option.",
    )
    UNKNOWN_TASK = (
        auto(),
        INVALID_ARGUMENT,
        "train.task is not a known GraphTask, or train.link_prediction is set for another task.",
        "Use GRAPH_TASK_NODE_CLASSIFICATION or GRAPH_TASK_LINK_PREDICTION (with its options).",
    )
    BAD_LINK_SPLIT = (
        auto(),
        INVALID_ARGUMENT,
        "train.link_prediction.test_fraction or val_fraction is outside [0, 1), or together "
        "they leave no training edges.",
        "Give fractions in [0, 1) that add up to less than 1.",
    )
    NOT_ENOUGH_EDGES = (
        auto(),
        INVALID_ARGUMENT,
        "A link-prediction job's graph has too few edges for its held-out test set or its "
        "training set.",
        "Import more edges, or change train.link_prediction.test_fraction.",
    )
    BAD_FAN_OUTS = (
        auto(),
        INVALID_ARGUMENT,
        "train.fan_outs is not one positive fan-out (or -1) per layer.",
        "Give one fan-out per layer.",
    )
    BAD_BACKEND = (
        auto(),
        INVALID_ARGUMENT,
        "train.backend is not gloo or nccl.",
        "Use gloo (CPU) or nccl (GPU).",
    )
    NO_MODEL = (
        auto(),
        INVALID_ARGUMENT,
        "infer.model_bundle.uri is empty.",
        "Give the bundle of a training job.",
    )
    NO_OUTPUT = (
        auto(),
        INVALID_ARGUMENT,
        "Inference asks for neither embeddings nor predictions.",
        "Set write_embeddings and/or write_predictions.",
    )
    NO_NODES = (
        auto(),
        INVALID_ARGUMENT,
        "No node ids are selected for inference.",
        "Select nodes (or all).",
    )
    # -- id lookups
    NO_IDS = (
        auto(),
        INVALID_ARGUMENT,
        "The lookup sends no ids.",
        "Send int64_ids or string_ids.",
    )
    MIXED_IDS = (
        auto(),
        INVALID_ARGUMENT,
        "The lookup sends both int64_ids and string_ids.",
        "Send one kind.",
    )
    TOO_MANY_IDS = (
        auto(),
        INVALID_ARGUMENT,
        "More ids than one call may map.",
        "Split the request (limit in the message).",
    )
    UNKNOWN_ID = (
        auto(),
        NOT_FOUND,
        "An id is not in the graph.",
        "Check the id.",
    )
    BAD_KIND = (
        auto(),
        INVALID_ARGUMENT,
        "kind is not ID_KIND_NODE or ID_KIND_EDGE.",
        "Set the kind.",
    )
    BAD_TYPE = (
        auto(),
        INVALID_ARGUMENT,
        "A node/edge type was named but the graph is homogeneous.",
        "Leave type empty.",
    )
    BAD_DIRECTION = (
        auto(),
        INVALID_ARGUMENT,
        "direction is unspecified.",
        "Set the mapping direction.",
    )

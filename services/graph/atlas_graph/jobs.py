"""Graph jobs (import, generate, partition, train, infer): the table of kinds the shared job
runner (:class:`atlas_core.jobs.JobTable`) runs in subprocesses."""

from __future__ import annotations

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.jobs import JobKind, JobTable

KIND_IMPORT = "import_graph"
KIND_GENERATE = "generate_graph"
KIND_PARTITION = "partition_graph"
KIND_TRAIN = "train"
KIND_INFER = "infer"

JOBS = JobTable(
    "graph",
    [
        JobKind(KIND_IMPORT, "atlas_graph.job_work:import_graph", pb.ImportGraphSpec),
        JobKind(KIND_GENERATE, "atlas_graph.job_work:generate", pb.GenerateGraphSpec),
        JobKind(KIND_PARTITION, "atlas_graph.job_work:partition", pb.PartitionGraphSpec),
        # A train job resumes from its last checkpoint after a service restart.
        JobKind(KIND_TRAIN, "atlas_graph.job_work:train", pb.TrainGraphSpec, resumable=True),
        JobKind(KIND_INFER, "atlas_graph.job_work:infer", pb.InferGraphSpec),
    ],
    runtime="atlas_graph.runtime:open_runtime",
)

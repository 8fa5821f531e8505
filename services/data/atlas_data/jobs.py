"""Data jobs (ingest, compaction, sample matching, derivation): the table of kinds the
shared job runner (:class:`atlas_core.jobs.JobTable`) runs in subprocesses."""

from __future__ import annotations

from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.jobs import JobKind, JobTable

KIND_INGEST = "ingest"
KIND_COMPACTION = "compaction"
KIND_MATCH = "match_samples"
KIND_DERIVE = "derive_dataset"

JOBS = JobTable(
    "data",
    [
        # An ingest resumes from its last committed batch after a service restart.
        JobKind(KIND_INGEST, "atlas_data.job_work:ingest", pb.IngestSpec, resumable=True),
        JobKind(KIND_COMPACTION, "atlas_data.job_work:compact", pb.CompactionSpec),
        JobKind(KIND_MATCH, "atlas_data.job_work:match_samples", pb.MatchSamplesSpec),
        JobKind(KIND_DERIVE, "atlas_data.job_work:derive", pb.DeriveDatasetSpec),
    ],
    runtime="atlas_data.runtime:open_runtime",
    max_concurrent=2,
)

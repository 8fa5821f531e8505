"""Typed settings of the graph service (env prefix ATLAS_GRAPH_)."""

from __future__ import annotations

from pydantic import Field

from atlas_core.config import JobSettings, ServiceSettings, StrictModel
from atlas_core.rpc import ClientSettings


class PartitionSettings(StrictModel):
    # 0 means "what psutil reports available when the estimate is made".
    memory_budget_bytes: int = 0
    max_translate_ids: int = 100_000


class TrainSettings(StrictModel):
    # Seconds the graph servers get to exit on their own after the trainers finished.
    server_exit_grace_s: float = 30.0
    # Seconds a trainer may take to connect and start before the job fails.
    start_timeout_s: float = 120.0
    omp_threads_per_process: int = 1


class GraphSettings(ServiceSettings):
    partition: PartitionSettings = Field(default_factory=PartitionSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    # The data service, for node embeddings written into a feature group (unset: train jobs
    # asking for embeddings_feature_group are refused).
    data: ClientSettings | None = None

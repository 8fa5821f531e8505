"""Typed settings of the trainer service (env prefix ATLAS_TRAINER_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from atlas_core.config import JobSettings, ServiceSettings, StrictModel


class PeerSettings(StrictModel):
    """How to reach another ATLAS service (the launcher fills these in)."""

    target: str = ""
    token: SecretStr | None = None


class TrainerJobSettings(JobSettings):
    # One job at a time by default (atlas_trainer.jobs.JOBS): each AutoML job already uses
    # every core it is given; two at once only share them.
    default_wall_budget_seconds: float = 300.0
    # Part of the wall budget kept back for the final refit, ensemble, bundle and reports,
    # so the whole job stays within 110% of its budget.
    finalize_reserve_fraction: float = 0.15
    # How long a finished job keeps retrying the serving registry (exponential backoff, capped
    # per wait) before it reports the registration FAILED; the bundle is kept either way.
    register_retry_seconds: float = Field(default=300.0, ge=0.0)
    register_backoff_max_seconds: float = Field(default=30.0, gt=0.0)
    # Deep-learning jobs: the most classes a classifier head may have (a bigger one belongs
    # to a sharded classifier layer).
    deep_max_classes: int = Field(default=1000, ge=2)
    # A GPU trial whose mean utilisation stays below this is reported (log, event, report).
    gpu_low_utilization_percent: float = Field(default=20.0, ge=0.0, le=100.0)


class DaskSettings(StrictModel):
    """Distributed gradient boosting (xgboost.dask, lightgbm.dask) inside AutoML trials."""

    # "auto": boosters on at least min_rows training rows fit on the Dask cluster, smaller
    # fits (and row-sample rungs) stay in the trial's process; "always" / "never" force it.
    engine: Literal["auto", "always", "never"] = "auto"
    min_rows: int = Field(default=1_000_000, ge=1)
    # A running scheduler (tcp://host:8786) for a real cluster; empty: a LocalCluster of
    # local_workers processes started for the job and closed after it.
    scheduler_address: str = ""
    local_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    connect_timeout_seconds: float = Field(default=10.0, gt=0.0)


class TrainerSettings(ServiceSettings):
    data: PeerSettings = Field(default_factory=PeerSettings)
    # The model registry: resolving replaces_model and registering finished jobs' bundles.
    serving: PeerSettings = Field(default_factory=PeerSettings)
    jobs: TrainerJobSettings = Field(default_factory=TrainerJobSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)

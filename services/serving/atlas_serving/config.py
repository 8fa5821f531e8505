"""Typed settings of the serving service (env prefix ATLAS_SERVING_)."""

from __future__ import annotations

from pydantic import Field

from atlas_core.config import JobSettings, ServiceSettings, StrictModel
from atlas_core.rpc.channel import ClientSettings


class CapacityDefaults(StrictModel):
    # Per endpoint and replica: requests running at once, and waiting beyond that.
    max_concurrency: int = 64
    max_queue: int = 256
    # Longest a request waits in that queue for a slot before RESOURCE_EXHAUSTED (Triton's
    # queue policy timeout with action REJECT), so admitted latency stays bounded even for
    # callers without a deadline; 0: wait until the call's deadline.
    queue_timeout_ms: float = Field(default=0.0, ge=0)
    # New predictions are refused at once while the replica's event loop runs timers later
    # than this (calls then wait in gRPC's backlog before any admission sees them; see
    # dataplane/loop_lag.py); 0 (the default): never shed on lag, since a loaded host's
    # stalls (a model load, a busy machine) would refuse calls; ~500 suits a dedicated host.
    max_loop_lag_ms: float = Field(default=0.0, ge=0)
    # Bytes of loaded models per replica (LRU eviction beyond it).
    memory_budget_bytes: int = 2 * 1024**3
    max_batch_size: int = 64
    max_delay_ms: float = 2.0
    # Single rows and small coalesced batches are answered on the event loop (no thread
    # hop) when the model's measured single-row cost is at most this (compiled tree
    # ensembles); 0: always use the inference threads.
    inline_budget_ms: float = 0.25


class RuntimeSettings(StrictModel):
    replica_id: str = "serving-0"
    # How often a replica re-reads endpoint state from the metadata DB (convergence delay).
    poll_seconds: float = 0.25
    # How often per-variant statistics are published for alarms and GetEndpointStats.
    stats_publish_seconds: float = 0.25
    # How often a rollout driver evaluates its alarms and steps.
    rollout_tick_seconds: float = 0.2
    # A rollout whose driver has not heartbeated for this long is taken over by a replica.
    rollout_lease_seconds: float = 5.0
    # Threads running batched inference (off the event loop).
    inference_threads: int = 2
    # Compile every model family for the float-matrix fast path (verified before use); false
    # compiles XGBoost trees only, as serving did before 2026-12-07 (a switch for comparing).
    compile_models: bool = True
    # A bundle with a refit-full version (AutoML: each ensemble member refit once on all
    # rows) serves it when its estimated quality is at most this much worse, relative, than
    # the fold-bagged model's; negative: always serve the fold-bagged model.
    refit_full_tolerance: float = 0.005
    capture_prefix: str = "serving/capture"
    # Where PredictBatch writes the results of input_artifact requests.
    batch_output_prefix: str = "serving/batch"


class QualitySettings(StrictModel):
    # Ground truth is accepted for predictions this recent; older index rows are pruned.
    retention_days: float = 30.0
    # Bootstrap resamples of every quality interval (fixed seed).
    bootstrap_resamples: int = 400
    # How often exported quality metrics and quality alerts are refreshed.
    evaluate_seconds: float = 30.0
    # How often the prediction index buffer is written to the metadata DB.
    flush_seconds: float = 1.0


class ServingSettings(ServiceSettings):
    # The data service, for entity-id feature lookups (unset: entity requests are refused).
    data: ClientSettings | None = None
    # The labeling service, where bad-case jobs import (unset: such jobs are refused).
    labeling: ClientSettings | None = None
    # How long a bad-case job keeps retrying (with backoff) an unreachable labeling service.
    labeling_retry_seconds: float = Field(default=120.0, gt=0)
    capacity: CapacityDefaults = Field(default_factory=CapacityDefaults)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)

"""Typed settings of the labeling service (env prefix ATLAS_LABELING_)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from atlas_core.config import ServiceSettings, StrictModel


class PeerSettings(StrictModel):
    """How to reach another ATLAS service (the launcher fills these in)."""

    target: str = ""
    token: SecretStr | None = None


class QueueSettings(StrictModel):
    # Lease of an assignment when the project does not set one.
    default_lease_s: float = 3600.0
    # Attempts of an assignment transaction that lost a race (a unique-key conflict).
    max_assign_retries: int = 5
    max_assignments_per_request: int = 100
    # An annotator with at least this many gold answers, fewer than min_gold_accuracy of
    # them right, has their items flagged and sent to someone else.
    min_gold_answers: int = 3
    min_gold_accuracy: float = 0.7
    # Weighted (Dawid-Skene) consensus decides each completed item with the project's stored
    # confusion matrices and refits them over the whole project every this many decisions
    # (and on GetAgreement), so a submit does not cost a pass over the project.
    ds_refit_every: int = Field(default=500, ge=1)


class ItemSettings(StrictModel):
    max_items_per_request: int = 1000
    # Bytes read from the start of an image to find its pixel size.
    image_header_bytes: int = 512 * 1024


class JobSettings(StrictModel):
    max_concurrent: int = 1
    runner_id: str = "labeling-0"
    # How long a job keeps retrying (with backoff) a peer service that is unreachable, e.g.
    # serving while an export attaches ground truth.
    peer_retry_seconds: float = Field(default=120.0, gt=0)


class LabelingSettings(ServiceSettings):
    # Exports are registered with the data service; pre-labels come from serving.
    data: PeerSettings = Field(default_factory=PeerSettings)
    serving: PeerSettings = Field(default_factory=PeerSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    items: ItemSettings = Field(default_factory=ItemSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    # Python's GIL switch interval in the service process (None: Python's 5 ms). Requests run
    # in worker threads beside the event loop; a shorter interval hands the GIL over sooner,
    # which shortens the queueing tail of concurrent requests (not their CPU time).
    switch_interval_s: float | None = Field(default=0.001, gt=0, le=0.1)

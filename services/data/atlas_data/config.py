"""Typed settings of the data service (env prefix ATLAS_DATA_)."""

from __future__ import annotations

from pydantic import Field

from atlas_core.config import JobSettings, ServiceSettings, StrictModel
from atlas_data.native_reader import NativeReaderSettings
from atlas_data.online import OnlineStoreSettings


class IngestSettings(StrictModel):
    # PutRecords buffers a whole stream before committing it (all-or-nothing): bound it.
    max_stream_bytes: int = 512 * 1024 * 1024
    max_entities_per_read: int = 1000
    offline_flush_seconds: float = 5.0


class DaskSettings(StrictModel):
    """Where point-in-time matching runs: in the job process, or on a dask.distributed
    cluster (each worker joins the shards of entities it is given; workers need atlas-data
    installed)."""

    # Scheduler address, e.g. tcp://10.0.0.5:8786; empty: join in the job process.
    scheduler_address: str = ""
    # Shards per feature-group join; 0: two per worker connected when the job starts.
    shards: int = Field(default=0, ge=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)


class MatchingSettings(StrictModel):
    """Point-in-time matching in the job process: in memory, or out of core."""

    # Memory the join of one job may use, in bytes; 0: join in memory (the whole history and
    # samples at once). Set, the job spills both sides into entity-hash buckets under
    # spill_dir and joins bucket by bucket, with the bucket count derived from this budget.
    memory_budget_bytes: int = Field(default=0, ge=0)
    # Directory for the spill files (removed when the job ends); empty: the system temp dir.
    spill_dir: str = ""


class DataSettings(ServiceSettings):
    online: OnlineStoreSettings = Field(default_factory=OnlineStoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    native_reader: NativeReaderSettings = Field(default_factory=NativeReaderSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    matching: MatchingSettings = Field(default_factory=MatchingSettings)

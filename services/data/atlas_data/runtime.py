"""Everything the data service runs on, built from settings in one place: used by the
server process and by job subprocesses alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from atlas_core.db import apply_migrations, check_connection, create_engine_from_settings
from atlas_core.jobs import JOBS_MIGRATIONS
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_data.config import DataSettings
from atlas_data.datasets import DatasetCatalog
from atlas_data.feature_groups import FeatureGroupCatalog
from atlas_data.ingest import Ingestor
from atlas_data.offline import OfflineStore
from atlas_data.online import OnlineStore, open_online_store
from atlas_data.tables import MIGRATIONS


@dataclass
class DataRuntime:
    settings: DataSettings
    engine: Engine
    artifacts: ArtifactStore
    online: OnlineStore
    offline: OfflineStore
    groups: FeatureGroupCatalog
    datasets: DatasetCatalog
    ingestor: Ingestor

    def close(self) -> None:
        self.ingestor.close()
        self.online.close()
        self.engine.dispose()


def _resolve(settings: DataSettings) -> DataSettings:
    """Relative paths of the online store live under data_dir."""
    online = settings.online
    if online.backend == "lmdb" and not online.lmdb_path.is_absolute():
        online = online.model_copy(update={"lmdb_path": settings.data_dir / online.lmdb_path})
    return settings.model_copy(update={"online": online})


def open_runtime(settings: DataSettings, *, migrate: bool = True) -> DataRuntime:
    """Connect to the DB (migrating it), the object store and the online store.

    Raises Unavailable / Unauthenticated / ConfigError with a message saying what to fix.
    """
    settings = _resolve(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine_from_settings(settings.database)
    check_connection(engine)
    if migrate:
        apply_migrations(engine, MIGRATIONS, JOBS_MIGRATIONS)
    artifacts = open_artifact_store(settings.s3)
    online = open_online_store(settings.online)
    offline = OfflineStore(engine, artifacts, Path(settings.data_dir) / "offline-staging")
    groups = FeatureGroupCatalog(engine)
    return DataRuntime(
        settings,
        engine,
        artifacts,
        online,
        offline,
        groups,
        DatasetCatalog(engine),
        Ingestor(groups, online, offline),
    )

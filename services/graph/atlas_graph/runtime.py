"""Everything the graph service runs on, built from settings in one place: used by the
server process and by job subprocesses alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from atlas_core.bundle_signing import BundleSigner, bundle_signer
from atlas_core.db import apply_migrations, check_connection, create_engine_from_settings
from atlas_core.jobs import JOBS_MIGRATIONS
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_graph.catalog import GraphCatalog
from atlas_graph.config import GraphSettings
from atlas_graph.tables import MIGRATIONS


@dataclass
class GraphRuntime:
    settings: GraphSettings
    engine: Engine
    artifacts: ArtifactStore
    catalog: GraphCatalog
    # Signs the serving bundles train jobs write (atlas_core.bundles.node_lookup).
    signer: BundleSigner

    @property
    def work_root(self) -> Path:
        return Path(self.settings.data_dir) / "graph"

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(settings: GraphSettings, *, migrate: bool = True) -> GraphRuntime:
    """Connect to the DB (migrating it) and the object store.

    Raises Unavailable / Unauthenticated / ConfigError with a message saying what to fix.
    """
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine_from_settings(settings.database)
    check_connection(engine)
    if migrate:
        apply_migrations(engine, MIGRATIONS, JOBS_MIGRATIONS)
    runtime = GraphRuntime(
        settings,
        engine,
        open_artifact_store(settings.s3),
        GraphCatalog(engine),
        bundle_signer(settings.bundles, settings.data_dir),
    )
    runtime.work_root.mkdir(parents=True, exist_ok=True)
    return runtime

"""Everything the serving service runs on, built from settings in one place: used by the
server process and by monitoring job subprocesses alike. Stored records are encoded by the
codecs of convert.py (canonical proto JSON), handed to the stores here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from atlas_core.bundle_signing import bundle_trust
from atlas_core.clients.data import DataClient
from atlas_core.db import (
    IdempotencyStore,
    apply_migrations,
    check_connection,
    create_engine_from_settings,
)
from atlas_core.jobs import JOBS_MIGRATIONS
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_serving.bundle_access import BundleLoader, trusted_loader
from atlas_serving.config import ServingSettings
from atlas_serving.control.endpoints import EndpointStore
from atlas_serving.control.registry import Registry
from atlas_serving.control.rollout import DeploymentStore
from atlas_serving.convert import CODECS
from atlas_serving.monitoring.alerts import AlertStore
from atlas_serving.records import Codecs
from atlas_serving.tables import MIGRATIONS, idempotency


@dataclass
class ServingRuntime:
    settings: ServingSettings
    engine: Engine
    artifacts: ArtifactStore
    loader: BundleLoader
    # The data service, for entity-id feature lookups; None when not configured.
    data_client: DataClient | None
    registry: Registry
    endpoints: EndpointStore
    deployments: DeploymentStore
    alerts: AlertStore
    idempotency: IdempotencyStore
    codecs: Codecs

    def close(self) -> None:
        if self.data_client is not None:
            self.data_client.close()
        self.engine.dispose()


def open_runtime(
    settings: ServingSettings,
    *,
    loader: BundleLoader | None = None,
    migrate: bool = True,
    connect_data: bool = True,
) -> ServingRuntime:
    """Connect to the DB (migrating it), the object store and (when configured and
    ``connect_data``) the data service.

    Raises Unavailable / Unauthenticated / ConfigError with a message saying what to fix.
    """
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine_from_settings(settings.database)
    check_connection(engine)
    if migrate:
        apply_migrations(engine, MIGRATIONS, JOBS_MIGRATIONS)
    artifacts = open_artifact_store(settings.s3)
    loader = loader or trusted_loader(bundle_trust(settings.bundles, settings.data_dir))
    client = (
        DataClient(settings.data, timeout=5.0)
        if settings.data is not None and connect_data
        else None
    )
    return ServingRuntime(
        settings=settings,
        engine=engine,
        artifacts=artifacts,
        loader=loader,
        data_client=client,
        registry=Registry(engine, artifacts, loader, CODECS.model_version),
        endpoints=EndpointStore(engine, CODECS.endpoint_spec),
        deployments=DeploymentStore(engine, CODECS.deployment),
        alerts=AlertStore(engine, CODECS.alert),
        idempotency=IdempotencyStore(engine, idempotency),
        codecs=CODECS,
    )

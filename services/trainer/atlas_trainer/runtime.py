"""Everything the trainer runs on, built from settings: used by the server process and by
training job subprocesses alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from atlas_core.bundle_signing import BundleSigner, BundleTrust, bundle_signer, bundle_trust
from atlas_core.clients import DataClient
from atlas_core.clients.serving import ServingClient
from atlas_core.db import apply_migrations, check_connection, create_engine_from_settings
from atlas_core.errors import FailedPrecondition
from atlas_core.jobs import JOBS_MIGRATIONS
from atlas_core.rpc import ClientSettings
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_trainer.automl.meta import MIGRATIONS as META_MIGRATIONS
from atlas_trainer.automl.meta import SqlMetaStore
from atlas_trainer.config import TrainerSettings


@dataclass
class TrainerRuntime:
    settings: TrainerSettings
    engine: Engine
    artifacts: ArtifactStore
    meta_store: SqlMetaStore
    # Signs the bundles this trainer writes; trust checks the ones it loads back (explain).
    signer: BundleSigner
    trust: BundleTrust

    @property
    def optuna_storage_url(self) -> str:
        """Studies live in the metadata DB, so several workers (and optuna-dashboard) share
        them; PostgreSQL in production, the SQLite file by default."""
        return self.engine.url.render_as_string(hide_password=False)

    def data_client(self) -> DataClient:
        peer = self.settings.data
        if not peer.target:
            raise FailedPrecondition(
                "this trainer has no data service configured (ATLAS_TRAINER_DATA__TARGET); "
                "pass a dataset_artifact instead of a dataset ref",
                reason="NO_DATA_SERVICE",
            )
        return DataClient(ClientSettings(target=peer.target, token=peer.token))

    def serving_settings(self) -> ClientSettings:
        """How to reach the model registry; FAILED_PRECONDITION when none is configured."""
        peer = self.settings.serving
        if not peer.target:
            raise FailedPrecondition(
                "this trainer has no serving service configured (ATLAS_TRAINER_SERVING__TARGET): "
                "replaces_model and register need the model registry",
                reason="NO_SERVING_SERVICE",
            )
        return ClientSettings(target=peer.target, token=peer.token)

    def serving_client(self) -> ServingClient:
        return ServingClient(self.serving_settings())

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(settings: TrainerSettings, *, migrate: bool = True) -> TrainerRuntime:
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine_from_settings(settings.database)
    check_connection(engine)
    if migrate:
        apply_migrations(engine, META_MIGRATIONS, JOBS_MIGRATIONS)
    return TrainerRuntime(
        settings,
        engine,
        open_artifact_store(settings.s3),
        SqlMetaStore(engine),
        signer=bundle_signer(settings.bundles, settings.data_dir),
        trust=bundle_trust(settings.bundles, settings.data_dir),
    )

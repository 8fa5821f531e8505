"""Everything the labeling service runs on, built from settings in one place: used by the
server process and by job subprocesses alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from atlas_core.db import apply_migrations, check_connection, create_engine_from_settings
from atlas_core.jobs import JOBS_MIGRATIONS
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_labeling.assignments import AssignmentQueue
from atlas_labeling.config import LabelingSettings
from atlas_labeling.corrections import CorrectionQueue
from atlas_labeling.items import ItemStore
from atlas_labeling.projects import ProjectStore
from atlas_labeling.tables import MIGRATIONS


@dataclass
class LabelingRuntime:
    settings: LabelingSettings
    engine: Engine
    artifacts: ArtifactStore
    projects: ProjectStore
    items: ItemStore
    queue: AssignmentQueue
    corrections: CorrectionQueue

    @property
    def work_root(self) -> Path:
        return Path(self.settings.data_dir) / "labeling"

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(settings: LabelingSettings, *, migrate: bool = True) -> LabelingRuntime:
    """Connect to the DB (migrating it) and the object store.

    Raises Unavailable / Unauthenticated / ConfigError with a message saying what to fix.
    """
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    # NORMAL: a commit does not wait for an fsync of the WAL (the queue's writers are
    # serialised, so that wait was every round trip's); commits survive a kill of the process.
    engine = create_engine_from_settings(settings.database, sqlite_synchronous="NORMAL")
    check_connection(engine)
    if migrate:
        apply_migrations(engine, MIGRATIONS, JOBS_MIGRATIONS)
    artifacts = open_artifact_store(settings.s3)
    projects = ProjectStore(engine)
    items = ItemStore(
        engine,
        projects,
        artifacts,
        max_items=settings.items.max_items_per_request,
        image_header_bytes=settings.items.image_header_bytes,
    )
    queue = AssignmentQueue(
        engine,
        projects,
        items,
        max_count=settings.queue.max_assignments_per_request,
        max_retries=settings.queue.max_assign_retries,
        min_gold_answers=settings.queue.min_gold_answers,
        min_gold_accuracy=settings.queue.min_gold_accuracy,
        ds_refit_every=settings.queue.ds_refit_every,
    )
    runtime = LabelingRuntime(
        settings,
        engine,
        artifacts,
        projects,
        items,
        queue,
        CorrectionQueue(engine, projects, items),
    )
    runtime.work_root.mkdir(parents=True, exist_ok=True)
    return runtime

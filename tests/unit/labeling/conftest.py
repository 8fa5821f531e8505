"""A labeling service on a real metadata database (SQLite and PostgreSQL) and a local artifact
store, with a clock the tests move forward to expire leases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from atlas_core.config import DatabaseSettings
from atlas_core.db import apply_migrations, create_engine_from_settings
from atlas_core.jobs import JOBS_MIGRATIONS
from atlas_core.storage import LocalArtifactStore
from atlas_labeling.assignments import AssignmentQueue
from atlas_labeling.config import LabelingSettings
from atlas_labeling.corrections import CorrectionQueue
from atlas_labeling.items import ItemStore
from atlas_labeling.projects import ProjectStore
from atlas_labeling.runtime import LabelingRuntime
from atlas_labeling.service import LabelingService
from atlas_labeling.tables import MIGRATIONS
from tests.support.db import db_url  # noqa: F401


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Harness:
    service: LabelingService
    clock: Clock
    artifacts: LocalArtifactStore
    url: str


def build_service(url: str, root: Path, clock: Clock) -> LabelingService:
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    apply_migrations(engine, MIGRATIONS, JOBS_MIGRATIONS)
    artifacts = LocalArtifactStore(root)
    projects = ProjectStore(engine)
    items = ItemStore(engine, projects, artifacts)
    queue = AssignmentQueue(engine, projects, items, clock=clock)
    settings = LabelingSettings(data_dir=root.parent, database=DatabaseSettings(url=url))
    corrections = CorrectionQueue(engine, projects, items)
    return LabelingService(
        LabelingRuntime(settings, engine, artifacts, projects, items, queue, corrections)
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def harness(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Harness]:  # noqa: F811
    service = build_service(db_url, tmp_path / "store", clock)
    try:
        yield Harness(service, clock, service.rt.artifacts, db_url)  # type: ignore[arg-type]
    finally:
        service.stop()

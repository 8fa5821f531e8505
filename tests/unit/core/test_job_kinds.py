"""atlas_core.jobs.JobTable: specs stored as JSON and parsed back in real job subprocesses,
the runtime opened and closed around the work, defaults from the table, extras and timing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from sqlalchemy import Engine

from atlas.common.v1 import common_pb2
from atlas_core.config import JobSettings
from atlas_core.db import apply_migrations
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import (
    JOBS_MIGRATIONS,
    JobContext,
    JobKind,
    JobRunner,
    JobState,
    JobTable,
    spec_extras,
    spec_from_json,
    spec_to_json,
)

# ---- what a service's job_work and runtime look like (imported by name in the subprocess) ----


class FakeRuntime:
    """Writes a line to ``<dir>/runtime.log`` when opened and when closed."""

    def __init__(self, settings: dict[str, Any], migrate: bool) -> None:
        self.log = Path(settings["dir"]) / "runtime.log"
        self.migrate = migrate
        with self.log.open("a") as f:
            f.write("open\n")

    def close(self) -> None:
        with self.log.open("a") as f:
            f.write("close\n")


def open_fake_runtime(settings: dict[str, Any], *, migrate: bool = True) -> FakeRuntime:
    return FakeRuntime(settings, migrate)


def describe_work(
    rt: FakeRuntime, ctx: JobContext, spec: common_pb2.DatasetRef, **extras: Any
) -> dict[str, Any]:
    ctx.report(0.5, "half way")
    return {
        "spec_type": type(spec).__name__,
        "dataset_id": spec.dataset_id,
        "version": spec.version,
        "extras": {k: v for k, v in extras.items() if k != "started"},
        "started_in_the_past": extras.get("started", time.monotonic()) <= time.monotonic(),
        "timed": "started" in extras,
        "migrate": rt.migrate,
    }


def failing_work(rt: FakeRuntime, ctx: JobContext, spec: Any) -> dict[str, Any]:
    raise ValueError(f"cannot describe {spec.dataset_id}")


def settings_work(
    settings: dict[str, Any], ctx: JobContext, spec: dict[str, Any]
) -> dict[str, Any]:
    return {"raw": spec, "has_settings": "dir" in settings}


TABLE = JobTable(
    "test",
    [
        JobKind("describe", f"{__name__}:describe_work", common_pb2.DatasetRef, timed=True),
        JobKind("resumable", f"{__name__}:describe_work", common_pb2.DatasetRef, resumable=True),
        JobKind("fail", f"{__name__}:failing_work", common_pb2.DatasetRef),
    ],
    runtime=f"{__name__}:open_fake_runtime",
    max_concurrent=3,
)
NO_RUNTIME = JobTable("bare", [JobKind("raw", f"{__name__}:settings_work")])
FAST = dict(poll_interval=0.05, heartbeat_interval=0.5, stale_after=3.0)


@pytest.fixture
def engine(db_engine: Engine) -> Engine:
    apply_migrations(db_engine, JOBS_MIGRATIONS)
    return db_engine


@pytest.fixture
def started(engine: Engine, tmp_path: Path) -> Iterator[tuple[JobRunner, Path]]:
    runner = TABLE.runner(engine, {"dir": str(tmp_path)}, JobSettings(), **FAST)
    runner.start()
    yield runner, tmp_path
    runner.stop()


# ---- the pure parts ------------------------------------------------------------------------


def test_spec_round_trip_keeps_extras_beside_the_proto_fields() -> None:
    spec = common_pb2.DatasetRef(dataset_id="clicks", version=3)
    raw = spec_to_json(spec, study_name="s-1")
    assert raw == {
        "dataset_id": "clicks",
        "version": "3",
        "_study_name": "s-1",
    }  # int64: JSON string
    assert spec_from_json(common_pb2.DatasetRef, raw) == spec
    assert spec_extras(raw) == {"study_name": "s-1"}
    with pytest.raises(json_format.ParseError):
        spec_from_json(common_pb2.DatasetRef, {"no_such_field": 1})


def test_runner_defaults_come_from_the_table_unless_settings_say_otherwise(
    engine: Engine,
) -> None:
    default = TABLE.runner(engine, {}, JobSettings())
    assert default.runner_id == "test-0"
    assert default._max_concurrent == 3  # noqa: SLF001
    configured = TABLE.runner(engine, {}, JobSettings(max_concurrent=1, runner_id="test-7"))
    assert configured.runner_id == "test-7"
    assert configured._max_concurrent == 1  # noqa: SLF001
    with pytest.raises(InvalidArgument, match="unknown test job kind 'nope'"):
        TABLE.kind("nope")
    with pytest.raises(InvalidArgument, match="'job_work.train' is not 'module:function'"):
        JobTable("bad", [JobKind("train", "job_work.train")])
    with pytest.raises(InvalidArgument, match="must be unique"):
        JobTable("bad", [JobKind("a", "m:f"), JobKind("a", "m:g")])


# ---- real job subprocesses -----------------------------------------------------------------


def test_a_job_gets_its_parsed_spec_extras_and_runtime_which_is_closed(
    started: tuple[JobRunner, Path],
) -> None:
    runner, directory = started
    spec = common_pb2.DatasetRef(dataset_id="clicks", version=3)
    job_id = TABLE.submit(runner, "describe", spec, "req-1", study_name="s-1")
    record = runner.wait(job_id, timeout=30)
    assert record.state == JobState.SUCCEEDED, record.error
    assert record.result == {
        "spec_type": "DatasetRef",
        "dataset_id": "clicks",
        "version": 3,
        "extras": {"study_name": "s-1"},
        "started_in_the_past": True,
        "timed": True,
        "migrate": False,  # the service process migrated already
    }
    assert record.spec == spec_to_json(spec, study_name="s-1")
    assert not record.resumable
    assert (directory / "runtime.log").read_text() == "open\nclose\n"
    # The request id makes the submission idempotent.
    assert TABLE.submit(runner, "describe", spec, "req-1", study_name="s-1") == job_id


def test_resumable_kinds_are_submitted_resumable(started: tuple[JobRunner, Path]) -> None:
    runner, _ = started
    job_id = TABLE.submit(runner, "resumable", common_pb2.DatasetRef(dataset_id="d"))
    record = runner.wait(job_id, timeout=30)
    assert record.resumable and record.result["timed"] is False


def test_a_failing_job_fails_and_its_runtime_is_still_closed(
    started: tuple[JobRunner, Path],
) -> None:
    runner, directory = started
    job_id = TABLE.submit(runner, "fail", common_pb2.DatasetRef(dataset_id="broken"))
    record = runner.wait(job_id, timeout=30)
    assert record.state == JobState.FAILED
    assert "cannot describe broken" in (record.error or "")
    assert (directory / "runtime.log").read_text() == "open\nclose\n"


def test_a_table_without_runtime_hands_the_work_its_settings_and_json_spec(
    engine: Engine, tmp_path: Path
) -> None:
    runner = NO_RUNTIME.runner(engine, {"dir": str(tmp_path)}, JobSettings(), **FAST)
    runner.start()
    try:
        job_id = runner.submit("raw", {"window": 5})
        record = runner.wait(job_id, timeout=30)
    finally:
        runner.stop()
    assert record.state == JobState.SUCCEEDED, record.error
    assert record.result == {"raw": {"window": 5}, "has_settings": True}

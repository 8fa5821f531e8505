"""atlas_core.jobs on SQLite and PostgreSQL: real subprocesses, real crashes, real restarts."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psutil
import pytest
from sqlalchemy import Engine, update

from atlas_core.config import DatabaseSettings
from atlas_core.db import apply_migrations, create_engine_from_settings
from atlas_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atlas_core.jobs import (
    JOBS_MIGRATIONS,
    EventType,
    JobContext,
    JobRecord,
    JobRunner,
    JobState,
)
from atlas_core.jobs._schema import jobs as jobs_table
from atlas_core.jobs._store import utcnow

# ---- handlers (module level: the job subprocess imports them by name) -----------------------


def add_handler(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    steps = spec.get("steps", 3)
    for i in range(steps):
        ctx.report((i + 1) / steps, f"step {i + 1}", step=i + 1)
    return {"sum": sum(spec.get("values", [])), "attempt": ctx.attempt}


def failing_handler(ctx: JobContext, spec: dict[str, Any]) -> None:
    ctx.report(0.5, "half way")
    raise ValueError(f"bad input: {spec['why']}")


def polite_handler(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs until cancelled (or ``seconds`` pass), checking ctx.cancelled() as it should."""
    ctx.report(0.0, "started", pid=os.getpid())
    deadline = time.monotonic() + spec.get("seconds", 60)
    while time.monotonic() < deadline:
        if ctx.cancelled():
            return {"stopped_early": True}
        time.sleep(0.02)
    return {"stopped_early": False}


def stubborn_handler(ctx: JobContext, spec: dict[str, Any]) -> None:
    """Ignores cancel requests and SIGTERM: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctx.report(0.0, "started", pid=os.getpid())
    time.sleep(60)


def crashing_handler(ctx: JobContext, spec: dict[str, Any]) -> None:
    ctx.report(0.1, "about to crash")
    if spec["how"] == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


def sleepy_handler(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    time.sleep(spec["seconds"])
    return {}


def resumable_handler(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Counts steps with a checkpoint after each; attempt 1 hangs at ``hang_at`` until killed."""
    start = (ctx.last_checkpoint() or {}).get("step", 0)
    steps = spec["steps"]
    for step in range(start, steps):
        if step == spec.get("hang_at") and ctx.attempt == 1:
            ctx.report(None, "hanging", pid=os.getpid())
            while True:
                time.sleep(0.05)
        ctx.checkpoint({"step": step + 1})
        ctx.report((step + 1) / steps, f"step {step + 1}")
    return {"started_from": start, "attempt": ctx.attempt}


def db_away_handler(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints step 1, then finds the metadata database (attempt 1) or the object store
    (attempt 2) away on its first ``away_for`` attempts."""
    from atlas_core.errors import Unavailable

    start = (ctx.last_checkpoint() or {}).get("step", 0)
    if start == 0:
        ctx.checkpoint({"step": 1})
    if ctx.attempt <= spec["away_for"]:
        what = "DATABASE" if ctx.attempt % 2 else "OBJECT_STORE"
        raise Unavailable(f"{what.lower()} is unavailable", reason=f"{what}_UNAVAILABLE")
    return {"started_from": max(start, 1), "attempt": ctx.attempt}


def where_handler(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Where the job runs: its parent, and whether a module was imported before it started."""
    return {"parent": os.getppid(), "preloaded": spec["module"] in sys.modules}


HANDLERS = {
    "db_away": db_away_handler,
    "where": where_handler,
    "add": add_handler,
    "fail": failing_handler,
    "polite": polite_handler,
    "stubborn": stubborn_handler,
    "crash": crashing_handler,
    "sleepy": sleepy_handler,
    "resumable": resumable_handler,
}
FAST = dict(
    poll_interval=0.05, heartbeat_interval=0.5, stale_after=3.0, cancel_grace=1.0, kill_grace=0.5
)


def _runner_in_subprocess(url: str, runner_id: str) -> None:
    """Service A: runs jobs until it is SIGKILLed by the test (no clean shutdown)."""
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    JobRunner(engine, HANDLERS, runner_id=runner_id, max_concurrent=2, **FAST).start()  # type: ignore[arg-type]
    while True:
        time.sleep(1)


def _preloaded_jobs_in_subprocess(url: str, module: str, out: Any) -> None:
    """A fresh process (the fork server is one per process, started by the first preloaded
    runner): a runner preloading ``module`` runs two jobs; their results go to ``out``."""
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    runner = JobRunner(engine, HANDLERS, runner_id="preloaded", preload=[module], **FAST)  # type: ignore[arg-type]
    runner.start()
    try:
        records = [runner.wait(runner.submit("where", {"module": module}), 60) for _ in range(2)]
        out.put([(r.state.value, r.result, os.getpid()) for r in records])
    finally:
        runner.stop()
        engine.dispose()


# ---- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def engine(db_engine: Engine) -> Engine:
    apply_migrations(db_engine, JOBS_MIGRATIONS)
    return db_engine


@pytest.fixture
def make_runner(engine: Engine) -> Iterator[Callable[..., JobRunner]]:
    made: list[JobRunner] = []

    def make(**kwargs: Any) -> JobRunner:
        options = {**FAST, "max_concurrent": 2, **kwargs}
        runner = JobRunner(engine, HANDLERS, **options)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def event_types(runner: JobRunner, job_id: str) -> list[str]:
    return [e.type.value for e in runner.events(job_id)]


def progress_pid(runner: JobRunner, job_id: str) -> int | None:
    for event in runner.events(job_id):
        if event.type is EventType.PROGRESS and "pid" in event.payload:
            return int(event.payload["pid"])
    return None


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---- happy path and failures ----------------------------------------------------------------


def test_success_reports_progress_in_order_and_result(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    runner.start()
    job_id = runner.submit("add", {"values": [1, 2, 3], "steps": 4})
    record = runner.wait(job_id, timeout=30)
    assert record.state is JobState.SUCCEEDED
    assert record.result == {"sum": 6, "attempt": 1}
    assert record.progress == 1.0 and record.error is None and record.attempts == 1
    assert record.started_at and record.finished_at and record.started_at <= record.finished_at

    events = runner.events(job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type.value for e in events] == (
        ["submitted", "started"] + ["progress"] * 4 + ["succeeded"]
    )
    progress = [e.payload for e in events if e.type is EventType.PROGRESS]
    assert [p["step"] for p in progress] == [1, 2, 3, 4]
    assert [p["progress"] for p in progress] == [0.25, 0.5, 0.75, 1.0]
    assert progress[0]["message"] == "step 1"
    # watch replays from any point and ends with the terminal event.
    watched = list(runner.watch(job_id, after_seq=2))
    assert [e.seq for e in watched] == [e.seq for e in events[2:]]

    async def collect() -> list[int]:
        return [e.seq async for e in runner.awatch(job_id)]

    assert asyncio.run(collect()) == [e.seq for e in events]


def test_preloaded_runner_forks_jobs_from_a_server_that_imported_the_modules(  # type: ignore[no-untyped-def]
    make_runner, db_url: str
) -> None:
    module = "colorsys"  # imported by nothing else here
    plain = make_runner(runner_id="plain")
    plain.start()
    spawned = plain.wait(plain.submit("where", {"module": module}), timeout=60)
    assert spawned.state is JobState.SUCCEEDED
    assert spawned.result == {"parent": os.getpid(), "preloaded": False}
    plain.stop()

    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    service = mp.Process(target=_preloaded_jobs_in_subprocess, args=(db_url, module, out))
    service.start()
    try:
        results = out.get(timeout=120)
    finally:
        service.join(30)
    # Every job, not only the first, is forked from the fork server, which imported the module.
    for state, result, service_pid in results:
        assert state == JobState.SUCCEEDED.value
        assert result["preloaded"] is True
        assert result["parent"] != service_pid  # the fork server's child, not the service's


def test_watch_follows_a_live_job_until_it_ends(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    job_id = runner.submit("add", {"values": [5], "steps": 2})
    seen: list[str] = []
    watcher = threading.Thread(
        target=lambda: seen.extend(e.type.value for e in runner.watch(job_id, poll_interval=0.05))
    )
    watcher.start()
    runner.start()
    watcher.join(30)
    assert not watcher.is_alive()
    assert seen == ["submitted", "started", "progress", "progress", "succeeded"]


def test_handler_exception_fails_the_job_with_its_message(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    runner.start()
    job_id = runner.submit("fail", {"why": "no rows"})
    record = runner.wait(job_id, timeout=30)
    assert record.state is JobState.FAILED
    assert record.error == "ValueError: bad input: no rows"
    last = runner.events(job_id)[-1]
    assert last.type is EventType.FAILED
    assert "Traceback" in last.payload["traceback"]
    assert "failing_handler" in last.payload["traceback"]


def test_a_resumable_job_runs_again_after_the_database_or_object_store_was_away(
    make_runner,
) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    runner.start()
    job_id = runner.submit("db_away", {"away_for": 2}, resumable=True)
    record = runner.wait(job_id, timeout=60)
    assert record.state is JobState.SUCCEEDED, record.error
    assert record.result == {"started_from": 1, "attempt": 3}  # from its checkpoint
    assert event_types(runner, job_id).count("interrupted") == 2


def test_a_job_that_is_not_resumable_fails_when_the_database_was_away(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    runner.start()
    job_id = runner.submit("db_away", {"away_for": 1})
    record = runner.wait(job_id, timeout=60)
    assert record.state is JobState.FAILED
    assert record.error == "Unavailable: database is unavailable"  # not run again


@pytest.mark.parametrize(
    ("how", "expected"),
    [("exit", "exited with code 3"), ("kill", "killed by SIGKILL")],
)
def test_crashed_job_process_fails_the_job_naming_how_it_died(  # type: ignore[no-untyped-def]
    make_runner, how: str, expected: str
) -> None:
    runner = make_runner()
    runner.start()
    job_id = runner.submit("crash", {"how": how})
    record = runner.wait(job_id, timeout=30)
    assert record.state is JobState.FAILED
    assert expected in (record.error or "")
    assert event_types(runner, job_id)[-2:] == ["progress", "failed"]
    # The runner survives a crash and keeps working.
    next_job = runner.submit("add", {"values": [1]})
    assert runner.wait(next_job, timeout=30).state is JobState.SUCCEEDED


# ---- cancellation ---------------------------------------------------------------------------


def test_cancel_queued_job_is_immediate(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()  # not started: the job stays queued
    job_id = runner.submit("add", {"values": [1]})
    record = runner.cancel(job_id)
    assert record.state is JobState.CANCELLED and record.finished_at is not None
    assert event_types(runner, job_id) == ["submitted", "cancelled"]
    with pytest.raises(FailedPrecondition) as info:
        runner.cancel(job_id)
    assert info.value.reason == "JOB_FINISHED"
    runner.start()
    time.sleep(0.3)
    assert runner.get(job_id).state is JobState.CANCELLED
    assert runner.get(job_id).started_at is None


def test_cancel_running_job_stops_it_cleanly(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner(cancel_grace=10.0)  # must stop on its own, long before the grace ends
    runner.start()
    job_id = runner.submit("polite", {"seconds": 60})
    pid = wait_until(lambda: progress_pid(runner, job_id), what="job to start")
    started = time.monotonic()
    assert runner.cancel(job_id).cancel_requested
    record = runner.wait(job_id, timeout=10)
    assert time.monotonic() - started < 3
    assert record.state is JobState.CANCELLED
    assert record.result == {"stopped_early": True}  # the handler saw ctx.cancelled()
    assert event_types(runner, job_id)[-2:] == ["cancel_requested", "cancelled"]
    wait_until(lambda: process_gone(pid), timeout=5, what="job process to exit")


def test_cancel_from_another_runner_instance_reaches_the_job(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    runner.start()
    other = make_runner()  # e.g. another replica of the service: not started, shares the DB
    job_id = runner.submit("polite", {"seconds": 60})
    wait_until(lambda: progress_pid(runner, job_id), what="job to start")
    other.cancel(job_id)
    assert runner.wait(job_id, timeout=10).state is JobState.CANCELLED


def test_cancel_running_job_that_ignores_it_is_killed(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner(cancel_grace=0.5, kill_grace=0.5)
    runner.start()
    job_id = runner.submit("stubborn")
    pid = wait_until(lambda: progress_pid(runner, job_id), what="job to start")
    started = time.monotonic()
    runner.cancel(job_id)
    record = runner.wait(job_id, timeout=10)
    assert time.monotonic() - started < 5
    assert record.state is JobState.CANCELLED
    assert "SIGKILL" in record.message
    assert process_gone(pid)


# ---- restarts and recovery ------------------------------------------------------------------


def test_restart_recovers_jobs_of_a_crashed_runner(make_runner, db_url: str) -> None:  # type: ignore[no-untyped-def]
    runner_b = make_runner(runner_id="trainer-0")
    resumable = runner_b.submit("resumable", {"steps": 4, "hang_at": 2}, resumable=True)
    plain = runner_b.submit("polite", {"seconds": 60})

    # Service A (same runner id: it is the previous life of service B) runs both jobs ...
    mp = multiprocessing.get_context("spawn")
    service_a = mp.Process(target=_runner_in_subprocess, args=(db_url, "trainer-0"))
    service_a.start()
    try:
        wait_until(
            lambda: (
                (runner_b.get(resumable).checkpoint or {}).get("step") == 2
                and progress_pid(runner_b, resumable)
                and progress_pid(runner_b, plain)
            ),
            what="both jobs running, the resumable one checkpointed at step 2",
        )
        orphans = [progress_pid(runner_b, resumable), progress_pid(runner_b, plain)]
    finally:
        # ... and dies without any chance to clean up.
        os.kill(service_a.pid, signal.SIGKILL)  # type: ignore[arg-type]
        service_a.join(10)
    assert runner_b.get(resumable).state is JobState.RUNNING  # as the crash left it
    # The crashed service's job processes notice and exit instead of running unowned.
    for pid in orphans:
        wait_until(lambda pid=pid: process_gone(pid), timeout=5, what=f"orphan job {pid} to exit")

    runner_b.start()
    failed = runner_b.get(plain)
    assert failed.state is JobState.FAILED
    assert failed.error == "interrupted by service restart"
    assert event_types(runner_b, plain)[-2:] == ["interrupted", "failed"]

    resumed = runner_b.wait(resumable, timeout=30)
    assert resumed.state is JobState.SUCCEEDED
    assert resumed.result == {"started_from": 2, "attempt": 2}
    assert resumed.attempts == 2
    types = event_types(runner_b, resumable)
    assert types.count("started") == 2
    i = types.index("interrupted")
    assert types[i : i + 3] == ["interrupted", "requeued", "started"]


def test_jobs_of_a_runner_that_stopped_heartbeating_are_recovered(  # type: ignore[no-untyped-def]
    make_runner, engine: Engine
) -> None:
    runner = make_runner(runner_id="replica-2")
    plain = runner.submit("add", {"values": [1]})
    resumable = runner.submit("add", {"values": [2]}, resumable=True)
    # Simulate a vanished replica: both rows RUNNING under another owner, heartbeat long ago.
    with engine.begin() as conn:
        conn.execute(
            update(jobs_table).values(
                state="RUNNING",
                owner="replica-1",
                attempts=1,
                heartbeat_at=utcnow() - timedelta(hours=1),
                started_at=utcnow() - timedelta(hours=1),
            )
        )
    runner.start()
    record = runner.get(plain)
    assert record.state is JobState.FAILED
    assert "interrupted by service restart" in (record.error or "")
    done = runner.wait(resumable, timeout=30)
    assert done.state is JobState.SUCCEEDED and done.result == {"sum": 2, "attempt": 2}


def test_stop_requeues_resumable_running_jobs_and_fails_others(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    runner.start()
    resumable = runner.submit("polite", {"seconds": 60}, resumable=True)
    plain = runner.submit("polite", {"seconds": 60})
    pids = [
        wait_until(lambda j=j: progress_pid(runner, j), what="jobs to start")
        for j in (resumable, plain)
    ]
    runner.stop()
    assert all(process_gone(pid) for pid in pids)
    assert runner.get(resumable).state is JobState.QUEUED
    assert event_types(runner, resumable)[-2:] == ["interrupted", "requeued"]
    record = runner.get(plain)
    assert record.state is JobState.FAILED and record.error == "interrupted by service shutdown"


# ---- submission and queries -----------------------------------------------------------------


def test_submit_with_request_id_is_idempotent(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    first = runner.submit("add", {"values": [1, 2]}, request_id="req-1")
    assert runner.submit("add", {"values": [1, 2]}, request_id="req-1") == first
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(runner.submit("add", {"values": [9]}, request_id="req-2"))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert len(runner.list()) == 2
    with pytest.raises(AlreadyExists):
        runner.submit("add", {"values": [3]}, request_id="req-1")


def test_bad_requests_are_rejected(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    with pytest.raises(InvalidArgument) as info:
        runner.submit("no-such-kind", {})
    assert info.value.reason == "UNKNOWN_JOB_KIND" and "add" in info.value.message
    with pytest.raises(InvalidArgument, match="JSON"):
        runner.submit("add", {"values": {1, 2}})
    for call in (runner.get, runner.events, runner.cancel):
        with pytest.raises(NotFound):
            call("missing-job")
    with pytest.raises(InvalidArgument):
        runner.list(limit=0)
    with pytest.raises(InvalidArgument, match="module-level"):
        JobRunner(runner._store._engine, {"x": lambda ctx, spec: None})


def test_list_filters_and_pages(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner()
    ids = [runner.submit("add", {"values": [i]}) for i in range(3)]
    runner.submit("sleepy", {"seconds": 0})
    runner.cancel(ids[0])
    assert {r.id for r in runner.list(kind="add")} == set(ids)
    assert [r.id for r in runner.list(state=JobState.CANCELLED)] == [ids[0]]
    assert len(runner.list(state="QUEUED")) == 3
    page = runner.list(limit=2) + runner.list(limit=2, offset=2)
    assert len({r.id for r in page}) == 4
    assert all(isinstance(r, JobRecord) for r in page)


def test_concurrency_limit_is_respected(make_runner) -> None:  # type: ignore[no-untyped-def]
    runner = make_runner(max_concurrent=2)
    ids = [runner.submit("sleepy", {"seconds": 0.4}) for _ in range(5)]
    runner.start()
    max_seen = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # One query, one snapshot: reading the jobs one by one could count a job that has
        # just finished and the one that took its slot as running together.
        states = [r.state for r in runner.list(kind="sleepy") if r.id in ids]
        max_seen = max(max_seen, states.count(JobState.RUNNING))
        if len(states) == len(ids) and all(s is JobState.SUCCEEDED for s in states):
            break
        time.sleep(0.02)
    records = [runner.get(i) for i in ids]
    assert all(r.state is JobState.SUCCEEDED for r in records)
    # From the persisted timestamps: never more than two jobs held a slot at the same time.
    moments = sorted(
        [(r.started_at, 1) for r in records] + [(r.finished_at, -1) for r in records],
        key=lambda m: (m[0], m[1]),
    )
    running = peak = 0
    for _, delta in moments:
        running += delta
        peak = max(peak, running)
    assert peak == 2 and max_seen <= 2

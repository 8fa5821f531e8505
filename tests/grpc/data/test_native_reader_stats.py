"""The native reader's diagnostics (OnlineReaderService.GetReaderStats): per-call phase
timings that grow with the calls served, process fault and scheduling counters, and whether
the memory-mapped store is held in RAM -- locked, or only kept mapped when the kernel refuses
the lock (RLIMIT_MEMLOCK without CAP_IPC_LOCK), or capped by --lock-memory."""

from __future__ import annotations

import asyncio
import os
import pwd
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc import aio

from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import online_reader_service_pb2 as stats_pb
from atlas.data.v1 import online_reader_service_pb2_grpc as stats_grpc
from tests.grpc.data.conftest import TOKEN
from tests.grpc.data.test_feature_store import put
from tests.grpc.data.test_native_reader import both, mixed_record, mixed_spec, request  # noqa: F401
from tests.support.online_reader import reader_binary

pytestmark = [
    pytest.mark.skipif(reader_binary() is None, reason="atlas-online-reader is not built"),
]
NOW = time.time()
MIB = 1024**2
PHASES = ["auth", "lookup", "serialize", "write", "handler", "total"]
AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def stats(address: str, **request: object) -> stats_pb.GetReaderStatsResponse:
    async with aio.insecure_channel(address) as channel:
        stub = stats_grpc.OnlineReaderServiceStub(channel)
        return await stub.GetReaderStats(
            stats_pb.GetReaderStatsRequest(**request),  # type: ignore[arg-type]
            metadata=AUTH,
        )


async def test_stats_count_calls_with_their_phases_and_faults(both):  # noqa: F811
    harness, _, native, call = both
    address = harness.service.native_reader.address
    await harness.stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
    await put(harness.stub, [mixed_record(k, NOW) for k in range(50)], name="mix")
    first = await stats(address)
    since = time.monotonic_ns()  # the reader stamps calls with the same CLOCK_MONOTONIC
    for k in range(20):
        await call(native, request("mix", [k, k + 1, 1000 + k]))
    with pytest.raises(aio.AioRpcError):
        await call(native, request("no-such-group", [1]))
    after = time.monotonic_ns()
    # A call is logged when gRPC reports it done, which may come just after its response.
    for _ in range(50):
        got = await stats(address, since_monotonic_ns=since, include_calls=True)
        if got.calls_summarized >= 21:
            break
        await asyncio.sleep(0.1)

    assert got.calls_total - first.calls_total == 21
    assert got.calls_failed - first.calls_failed == 1
    assert got.calls_summarized == 21
    assert [p.name for p in got.phases] == PHASES
    for phase in got.phases:
        assert phase.count == 21
        assert 0 <= phase.p50_us <= phase.p99_us <= phase.p999_us <= phase.max_us
    phases = {p.name: p for p in got.phases}
    assert phases["lookup"].max_us > 0 and phases["total"].p50_us >= phases["handler"].p50_us
    calls = got.calls
    assert len(calls.start_monotonic_ns) == 21
    assert all(since <= t <= after for t in calls.start_monotonic_ns)
    assert list(calls.start_monotonic_ns) == sorted(calls.start_monotonic_ns)
    assert list(calls.entities) == [3] * 20 + [1]
    assert list(calls.ok) == [True] * 20 + [False]
    assert all(n >= 0 for n in [*calls.minor_faults, *calls.major_faults])
    # Process counters come from the kernel and only grow.
    proc, before = got.process, first.process
    assert proc.threads >= 2
    assert proc.user_cpu_us + proc.system_cpu_us > before.user_cpu_us + before.system_cpu_us
    assert proc.voluntary_switches > before.voluntary_switches
    assert proc.minor_faults >= before.minor_faults and proc.run_delay_ns >= before.run_delay_ns
    # Calls before `since` are left out; without it every kept call is summarized.
    everything = await stats(address)
    assert everything.calls_summarized >= 21 and not everything.calls.start_monotonic_ns


async def test_stats_need_a_token(both):  # noqa: F811
    harness, *_ = both
    async with aio.insecure_channel(harness.service.native_reader.address) as channel:
        stub = stats_grpc.OnlineReaderServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as err:
            await stub.GetReaderStats(stats_pb.GetReaderStatsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_data_services_reader_holds_the_whole_store(both):  # noqa: F811
    """The data service asks for half of RAM: the store is held and in the page cache."""
    harness, *_ = both
    address = harness.service.native_reader.address
    await harness.stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
    await put(harness.stub, [mixed_record(k, NOW) for k in range(2000)], name="mix")
    size = (harness.settings.online.lmdb_path / "data.mdb").stat().st_size
    for _ in range(50):  # the reader follows the file once a second
        res = (await stats(address)).residency
        if res.held_bytes >= size:
            break
        await asyncio.sleep(0.1)
    assert res.store_bytes >= size and res.held_bytes >= size
    assert res.resident_bytes == res.store_bytes
    assert res.limit_bytes == int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.5)
    if res.mode == stats_pb.RESIDENCY_MODE_LOCKED:
        assert res.locked_bytes >= size and not res.error
    else:  # an unprivileged test run under a small RLIMIT_MEMLOCK
        assert res.mode == stats_pb.RESIDENCY_MODE_POPULATED and "mlock refused" in res.error


# ------------------------------------------------------------ the reader started directly


def _make_store(directory: Path, mib: int) -> int:
    """An LMDB environment of about ``mib`` MiB; returns the data file's size."""
    import lmdb

    env = lmdb.open(str(directory), max_dbs=8, map_size=4 * mib * MIB)
    db = env.open_db(b"blobs")
    with env.begin(write=True) as txn:
        for i in range(mib * 16):
            txn.put(i.to_bytes(8, "big"), os.urandom(64 * 1024), db=db)
    env.close()
    return (directory / "data.mdb").stat().st_size


def _as_user(memlock_bytes: int | None, user: str | None):
    """preexec_fn: set RLIMIT_MEMLOCK (soft and hard) when given, then drop to ``user``."""

    def apply() -> None:
        if memlock_bytes is not None:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock_bytes, memlock_bytes))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    return apply


PIDS: dict[str, int] = {}  # address -> pid of readers started here


@contextmanager
def started_reader(
    store: Path, lock_memory: int, memlock: int | None, user: str | None, *flags: str
) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            str(reader_binary()),
            "--lmdb",
            str(store),
            "--address",
            "127.0.0.1:0",
            "--lock-memory",
            str(lock_memory),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_user(memlock, user),
    )
    try:
        line = proc.stdout.readline().split()  # type: ignore[union-attr]  # PIPE
        assert line and line[0] == "listening", proc.stderr.read()  # type: ignore[union-attr]
        address = f"127.0.0.1:{line[1]}"
        PIDS[address] = proc.pid  # for /proc checks
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


@contextmanager
def store_of(mib: int) -> Iterator[tuple[Path, int]]:
    """A store of ``mib`` MiB in a directory another user can open (the reader may drop to
    nobody)."""
    directory = Path(tempfile.mkdtemp(prefix="atlas-reader-stats-"))
    try:
        directory.chmod(0o755)
        size = _make_store(directory, mib)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("nobody")
            for path in (directory, *directory.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        yield directory, size
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def store() -> Iterator[tuple[Path, int]]:
    with store_of(48) as made:
        yield made


async def held(address: str, size: int) -> stats_pb.StoreResidency:
    for _ in range(80):
        res = (await stats(address)).residency
        if res.held_bytes >= min(size, res.limit_bytes) // 4096 * 4096 and res.mode:
            return res
        await asyncio.sleep(0.1)
    return res


# Unprivileged here means: not root (or root dropped to nobody), so RLIMIT_MEMLOCK applies.
UNPRIVILEGED = "nobody" if os.geteuid() == 0 else None


async def test_a_refused_lock_keeps_the_store_mapped_and_says_so(store):
    """Under an 8 MiB RLIMIT_MEMLOCK (the default for non-root users) mlock of a 48 MiB store
    is refused: the reader reports it, and still reads the pages in and keeps them mapped."""
    directory, size = store
    with started_reader(directory, 1024 * MIB, 8 * MIB, UNPRIVILEGED) as address:
        res = await held(address, size)
    assert res.mode == stats_pb.RESIDENCY_MODE_POPULATED
    assert "mlock refused" in res.error
    assert res.held_bytes == res.store_bytes == size
    assert res.resident_bytes == size
    assert res.locked_bytes < size and res.memlock_rlimit_bytes == 8 * MIB
    assert not res.can_lock_unlimited


async def test_a_memlock_limit_above_the_store_locks_without_privileges():
    """Unprivileged with RLIMIT_MEMLOCK above the store (what a deployment must grant for a
    real store; here a 4 MiB store under the default 8 MiB): locked."""
    with store_of(4) as (directory, size):
        with started_reader(directory, 1024 * MIB, 8 * MIB, UNPRIVILEGED) as address:
            res = await held(address, size)
    assert res.mode == stats_pb.RESIDENCY_MODE_LOCKED and not res.error
    assert res.locked_bytes >= size == res.held_bytes
    assert res.memlock_rlimit_bytes == 8 * MIB and not res.can_lock_unlimited


async def test_the_lock_stops_at_its_limit(store):
    directory, size = store
    with started_reader(directory, 4 * MIB, None, None) as address:
        res = await held(address, 4 * MIB)
    assert res.mode == stats_pb.RESIDENCY_MODE_OVER_LIMIT
    assert "over the limit" in res.error
    assert res.held_bytes == 4 * MIB < size == res.store_bytes
    assert res.locked_bytes >= 4 * MIB


def _thread_slices(pid: int) -> list[int]:
    """se.slice (ns) of every thread of ``pid``, as the kernel schedules it."""
    slices = []
    for sched in Path(f"/proc/{pid}/task").glob("*/sched"):
        for line in sched.read_text().splitlines():
            if line.startswith("se.slice"):
                slices.append(int(line.split(":")[1]))
    return slices


@pytest.mark.skipif(
    not any(
        line.startswith("se.slice") for line in Path("/proc/self/sched").read_text().splitlines()
    ),
    reason="the kernel has no per-task slice (EEVDF custom slices need Linux 6.12+)",
)
async def test_the_scheduler_slice_reaches_every_thread(store):
    directory, _ = store
    with started_reader(directory, 0, None, None, "--scheduler-slice-us", "200") as address:
        pid = PIDS[address]
        for _ in range(30):  # gRPC may start threads after the first pass; it runs each second
            proc = (await stats(address)).process
            if proc.threads_with_slice == proc.threads:
                break
            await asyncio.sleep(0.1)
        slices = _thread_slices(pid)
    assert proc.slice_ns == 200_000 and not proc.slice_error
    assert proc.threads_with_slice == proc.threads >= 2
    assert slices and set(slices) == {200_000}
    with started_reader(directory, 0, None, None) as address:
        proc = (await stats(address)).process
        slices = _thread_slices(PIDS[address])
    assert proc.slice_ns == 0 and proc.threads_with_slice == 0
    assert 200_000 not in slices

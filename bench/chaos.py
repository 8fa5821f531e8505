"""Reliability under load (issue #33): overload of a real serving replica; soak, chaos under
load and RPC fuzzing of the whole suite.

--overload: a serving replica (``python -m atlas_serving``, default capacity settings) with an
XGBoost model (100 trees, 30 features); its capacity is measured first (closed-loop
single-row Predict at concurrency 8), then open-loop load generators offer 3x that rate for
60 s (--quick: 15 s). Reported: p99 of the admitted calls, p99 of the refused ones (refused
at once, not queued until the deadline), the refused fraction and any other status, and
the replica's RSS growth (RSS a few seconds after the load ends minus RSS before it).

--soak MINUTES: the whole suite (object store, every service, metadata in a private
PostgreSQL when its binaries exist) under steady mixed traffic — the chaos lanes below at a
gentler pace, no kills — while the memory of every process is sampled every 10 s: each
service's own process (RSS), its workers (job subprocesses, pools: the sum of their Pss), the
object store (RSS) and PostgreSQL (postmaster and backends: the sum of their Pss, which counts
the shared buffers once). A least-squares line through the samples of the last 2/3 of the soak
(caches and pools fill during the first third) gives the growth in MB per hour per process.

--chaos: the whole suite (object store, every service; metadata in a private PostgreSQL when
its binaries exist) under mixed traffic from retrying clients (ingest + online reads,
predictions, annotations, model registrations, training jobs) while each service, the object
store and PostgreSQL are killed with SIGKILL and restarted, one at a time; then every
acknowledged write is read back and every job and published artifact checked (see
bench/_chaos_suite.py for the lanes and the checks).

--fuzz CASES: every RPC of every contract fuzzed against the running suite (seeded; CASES in
all, as many per RPC; two processes, each with its own suite): see tests/support/rpc_fuzz.py.

    python bench/chaos.py                    # overload 60 s + a 5-minute soak + chaos
    python bench/chaos.py --chaos            # only the chaos run (--quick: shorter traffic)
    python bench/chaos.py --quick            # overload 15 s + 1-minute soak + short chaos
    python bench/chaos.py --overload --soak 30   # overload + a 30-minute soak
    python bench/chaos.py --fuzz 110000      # the RPC fuzzing campaign (not part of "all")

Writes bench/results/chaos.json (and a dated copy, see _results.py) with keys
overload_capacity_rps, overload_admitted_p99_ms, overload_rejected_fraction,
overload_rejected_p99_ms, overload_rss_growth_mb, soak_rss_growth_mb_per_hour (per process),
fuzz_cases, fuzz_internal, fuzz_store_changed_on_failure, and from --chaos acked_lost,
jobs_lost, half_published and chaos_* (client errors per lane and per kill, restart times).
Keys of earlier runs that this run did not measure are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as serving_bench  # noqa: E402  (replica start-up, bundle, closed-loop load)
from _results import RESULTS_DIR, write_results  # noqa: E402

TOKEN = serving_bench.TOKEN
# Overload drives explained predictions (SHAP contributions, in the inference threads) at an
# endpoint with a small admission limit: an endpoint whose capacity is its model's, not the
# host's gRPC ceiling, which Python load generators sharing 2 cores cannot triple.
LIMITS = {"max_concurrency": 8, "max_queue": 32}
META = [("authorization", f"Bearer {TOKEN}")]
OVERLOAD_FACTOR = 3.0
GENERATORS = 2  # open-loop generator processes
CHANNELS = 4  # per generator
# Per generator: calls in flight beyond this are counted as not sent (the generator's own
# bound, so a stalled server cannot make the client eat the host's memory).
MAX_OUTSTANDING = 4000
CALL_TIMEOUT_S = 10.0
RSS_BOUND_MB = 50.0
SOAK_BOUND_MB_PER_HOUR = 20.0
FUZZ_CASES_TARGET = 100_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- open-loop overload generator (a spawned process, grpc.aio) ------------------------------


def _open_loop(
    target: str, endpoint: str, rate: float, seconds: float, out: Any, closed: int = 0
) -> None:
    out.put(asyncio.run(_open_loop_async(target, endpoint, rate, seconds, closed)))


async def _open_loop_async(
    target: str, endpoint: str, rate: float, seconds: float, closed: int = 0
) -> dict:
    """Explained single-row Predict calls at ``rate`` per second (open loop), or from
    ``closed`` callers back to back (closed loop: the capacity measurement)."""
    from grpc import StatusCode, aio

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
    from atlas_core.clients.serving import feature_row

    rows = [feature_row(r) for r in serving_bench._features()]
    EXPLAIN = pb.PredictOptions(explain=True)
    # one HTTP/2 connection per channel: calls spread over several, as many clients would
    channels = [
        aio.insecure_channel(target, options=[("grpc.channel_id", k)]) for k in range(CHANNELS)
    ]
    stubs = [pb_grpc.ServingServiceStub(c) for c in channels]
    stub = stubs[0]
    lags: list[float] = []
    admitted: list[float] = []
    refused: list[float] = []
    other: Counter[str] = Counter()
    examples: dict[str, str] = {}
    inflight: set[asyncio.Task] = set()
    not_sent = 0

    async def one(i: int) -> None:
        t = time.perf_counter()
        try:
            await stubs[i % CHANNELS].Predict(
                pb.PredictRequest(endpoint_name=endpoint, row=rows[i % 64], options=EXPLAIN),
                metadata=META,
                timeout=CALL_TIMEOUT_S,
            )
            admitted.append(time.perf_counter() - t)
        except aio.AioRpcError as exc:
            if exc.code() == StatusCode.RESOURCE_EXHAUSTED:
                refused.append(time.perf_counter() - t)
            else:
                other[exc.code().name] += 1
                examples.setdefault(exc.code().name, exc.details() or "")

    await stub.Predict(pb.PredictRequest(endpoint_name=endpoint, row=rows[0]), metadata=META)
    start = time.perf_counter()
    sent = 0
    tick = start
    if closed:

        async def caller(k: int) -> None:
            i = k
            while time.perf_counter() - start < seconds:
                await one(i)
                i += closed

        await asyncio.gather(*[caller(k) for k in range(closed)])
        sent = len(admitted) + len(refused) + sum(other.values())
    while (elapsed := time.perf_counter() - start) < seconds:
        now = time.perf_counter()
        lags.append(now - tick)  # the generator's own loop: its lag inflates its latencies
        tick = now
        due = int(elapsed * rate)
        while sent < due:  # catch up in a burst when the generator's loop lagged
            if len(inflight) < MAX_OUTSTANDING:
                task = asyncio.create_task(one(sent))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            else:
                not_sent += 1
            sent += 1
        await asyncio.sleep(0.002)
    if inflight:
        await asyncio.wait(inflight)
    for c in channels:
        await c.close()
    return {
        "loop_gap_p99_ms": float(np.percentile(lags, 99)) * 1000 if lags else 0.0,
        "offered": sent,
        "not_sent": not_sent,
        "admitted": admitted,
        "refused": refused,
        "other": dict(other),
        "examples": examples,
    }


def overload(client: Any, target: str, pid: int, seconds: float, capacity_seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    probe = ctx.Process(target=_open_loop, args=(target, "bc", 0.0, capacity_seconds, q, 8))
    probe.start()
    measured = q.get(timeout=capacity_seconds + 120)
    probe.join(30)
    capacity = len(measured["admitted"]) / capacity_seconds
    rate = OVERLOAD_FACTOR * capacity
    time.sleep(2.0)
    before = rss_mb(pid)
    procs = [
        ctx.Process(target=_open_loop, args=(target, "bc", rate / GENERATORS, seconds, q))
        for _ in range(GENERATORS)
    ]
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            peak.append(rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for p in procs:
        p.start()
    parts = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    done.set()
    server = client.stats("bc", seconds + 5)[0]
    time.sleep(5.0)  # the replica drains its queues and batches
    after = rss_mb(pid)
    admitted = np.array([x for part in parts for x in part["admitted"]]) * 1000
    refused = np.array([x for part in parts for x in part["refused"]]) * 1000
    other: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for part in parts:
        other.update(part["other"])
        examples.update(part["examples"])
    offered = sum(part["offered"] for part in parts)
    answered = len(admitted) + len(refused) + sum(other.values())
    return {
        "overload_endpoint_limits": LIMITS,
        "overload_capacity_rps": capacity,
        "overload_offered_rps_target": rate,
        "overload_offered_rps": offered / seconds,
        "overload_not_sent": sum(part["not_sent"] for part in parts),
        "overload_admitted_rps": len(admitted) / seconds,
        "overload_admitted_p50_ms": float(np.percentile(admitted, 50)) if len(admitted) else None,
        "overload_admitted_p99_ms": float(np.percentile(admitted, 99)) if len(admitted) else None,
        "overload_rejected_fraction": len(refused) / answered if answered else None,
        "overload_rejected_p99_ms": float(np.percentile(refused, 99)) if len(refused) else None,
        "overload_other_statuses": dict(other),
        "overload_server_p99_ms": server.p99_ms,
        "overload_server_rejected": server.rejected,
        "overload_generator_loop_gap_p99_ms": max(part["loop_gap_p99_ms"] for part in parts),
        "overload_other_examples": examples,
        "overload_rss_before_mb": before,
        "overload_rss_peak_mb": max(peak),
        "overload_rss_after_mb": after,
        "overload_rss_growth_mb": after - before,
        "overload_seconds": seconds,
    }


def suite_soak(quick: bool, minutes: float) -> dict:
    from _chaos_suite import SoakPlan, new_root, run_soak

    plan = SoakPlan(minutes=minutes, every_s=2.0 if quick else 10.0)
    root = new_root("atlas-soak-")
    try:
        return run_soak(root, plan)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- set-up -------------------------------------------------------------------------------------


def run(quick: bool, soak_minutes: float, parts: set[str]) -> dict:
    from pydantic import SecretStr
    from sklearn.datasets import load_breast_cancer
    from xgboost import XGBClassifier

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas_core.clients.serving import ServingClient
    from atlas_core.config import S3Settings
    from atlas_core.launcher import SeaweedS3Server
    from atlas_core.rpc import ClientSettings
    from atlas_core.storage import open_artifact_store

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-chaos-"))
    weed = SeaweedS3Server(
        tmp / "weed", access_key="bench", secret_key="bench-secret-key", port=0, log_dir=tmp / "wl"
    )
    weed.start(timeout=60)
    procs: list = []
    out: dict = {"model": "XGBoost 100 trees depth 4, 30 features (breast_cancer)"}
    try:
        s3 = S3Settings(
            endpoint=weed.endpoint,
            access_key=SecretStr("bench"),
            secret_key=SecretStr("bench-secret-key"),
            bucket="bench",
        )
        store = open_artifact_store(s3)
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        X.columns = [c.replace(" ", "_") for c in X.columns]
        model = XGBClassifier(n_estimators=100, max_depth=4, n_jobs=1).fit(X, y)
        ref = serving_bench._bundle(
            store, "models/bc/v1.tar", serving_bench._signer(tmp), model=model
        )
        procs, target = serving_bench.start_atlas(tmp, s3)
        serving_bench._wait_serving(target)
        pid = procs[0].pid
        client = ServingClient(ClientSettings(target=target, token=SecretStr(TOKEN)))
        client.register("bc", ref.uri)  # type: ignore[attr-defined]
        for name in ("bc", "soak"):
            variant = pb.Variant(name="blue", role=pb.VARIANT_ROLE_LIVE, weight=100)
            variant.model.model_name, variant.model.version = "bc", 1
            spec = pb.EndpointSpec(name=name, variants=[variant])
            spec.capacity.warm = True
            if name == "bc":
                spec.capacity.max_concurrency = LIMITS["max_concurrency"]
                spec.capacity.max_queue = LIMITS["max_queue"]
            if name == "soak":  # the paths that buffer: capture and the prediction index
                spec.capture.enabled, spec.capture.sample_fraction = True, 1.0
                spec.quality.enabled, spec.quality.sample_fraction = True, 1.0
            client.create_endpoint(spec)
        out["rss_idle_mb"] = rss_mb(pid)
        if "overload" in parts:
            out.update(
                overload(client, target, pid, 15.0 if quick else 60.0, 3.0 if quick else 5.0)
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except Exception:
                p.kill()
        weed.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def chaos(quick: bool) -> dict:
    from _chaos_suite import ChaosPlan, new_root, run_chaos

    plan = (
        ChaosPlan(warmup_s=3, between_s=3, down_s=1, after_s=3, items=200, train_jobs=1)
        if quick
        else ChaosPlan()
    )
    root = new_root()
    try:
        return run_chaos(root, plan)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Shards of the campaign: each its own suite in its own process (two cores: two shards), with
# about as many RPCs each.
FUZZ_SHARDS = (
    ["atlas.data.", "atlas.graph.", "atlas.trainer."],
    ["atlas.labeling.", "atlas.serving."],
)


def _fuzz_shard(services: list[str], per_rpc: int, out: Any) -> None:
    from tests.support.rpc_fuzz import run_shard

    root = Path(tempfile.mkdtemp(prefix="atlas-fuzz-"))
    try:
        out.put(run_shard(root, services, per_rpc, seeded=True))
    except BaseException as exc:  # the parent reports it instead of waiting forever
        out.put(exc)
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fuzz_campaign(cases: int, quick: bool) -> dict:
    """Every RPC of every contract fuzzed against the running suite (tests/support/rpc_fuzz.py):
    ``cases`` in all, as many per RPC, seeded (derandomized: the same cases on every run)."""
    from tests.support.rpc_fuzz import contract_methods, summary

    methods = contract_methods()
    per_rpc = -(-cases // len(methods))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_fuzz_shard, args=(shard, per_rpc, q)) for shard in FUZZ_SHARDS]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    reports: list[dict] = []
    for _ in procs:
        part = q.get()
        if isinstance(part, BaseException):
            raise RuntimeError("a fuzzing shard failed") from part
        reports += part
    for proc in procs:
        proc.join(60)
    covered = {r["method"] for r in reports}
    missing = [
        m.full_name for m in methods if f"/{m.containing_service.full_name}/{m.name}" not in covered
    ]
    return {
        **summary(reports),
        "fuzz_per_rpc_examples": per_rpc,
        "fuzz_rpcs_not_fuzzed": missing,
        "fuzz_seconds": round(time.perf_counter() - started, 1),
        "fuzz_seeded": True,
    }


def previous(quick: bool) -> dict:
    """The latest results file's measured keys (kept when this run does not measure them)."""
    path = RESULTS_DIR / ("chaos_quick.json" if quick else "chaos.json")
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "run"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Sections: overload, soak, chaos. The flags choose them; none means all."
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    parser.add_argument("--overload", action="store_true", help="run the overload section")
    parser.add_argument(
        "--soak", type=float, metavar="MINUTES", help="run the soak section this long (5; quick 1)"
    )
    parser.add_argument("--chaos", action="store_true", help="run the chaos-under-load section")
    parser.add_argument(
        "--fuzz", type=int, metavar="CASES", help="fuzz every RPC, about CASES cases in all"
    )
    args = parser.parse_args()
    # The flags choose sections; none means all three.
    parts = {
        name
        for name, chosen in (
            ("overload", args.overload),
            ("soak", args.soak is not None),
            ("chaos", args.chaos),
            ("fuzz", args.fuzz is not None),
        )
        if chosen
    } or {"overload", "soak", "chaos"}  # the fuzz campaign only when asked
    minutes = args.soak if args.soak is not None else (1.0 if args.quick else 5.0)
    results: dict = {}
    if "overload" in parts:
        results.update(run(args.quick, minutes, {"overload"}))
    if "soak" in parts:
        results.update(suite_soak(args.quick, minutes))
    if "chaos" in parts:
        results.update(chaos(args.quick))
    if "fuzz" in parts:
        results.update(fuzz_campaign(args.fuzz, args.quick))
    # Merged into the latest file as it is now (another section may have been written while
    # this one ran); a new soak replaces every soak_* key of the older replica-only soak.
    merged = {
        k: v
        for k, v in previous(args.quick).items()
        if not ("soak" in parts and k.startswith("soak_"))
    }
    results = {**merged, **results}
    results["bounds"] = {
        "overload_rss_growth_mb": RSS_BOUND_MB,
        "soak_rss_growth_mb_per_hour": SOAK_BOUND_MB_PER_HOUR,
        "acked_lost": 0,
        "jobs_lost": 0,
        "half_published": 0,
        "fuzz_cases": FUZZ_CASES_TARGET,
        "fuzz_internal": 0,
        "fuzz_store_changed_on_failure": 0,
    }
    out = write_results("chaos", results, quick=args.quick)
    print(f"wrote {out}")
    shown = {k: v for k, v in results.items() if k not in ("soak_rss_samples", "fuzz_per_rpc")}
    print(json.dumps(shown, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Reliability under load (issue #33): overload and soak of a real serving replica, and chaos
under load of the whole suite.

--overload: a serving replica (``python -m atlas_serving``, default capacity settings) with an
XGBoost model (100 trees, 30 features); its capacity is measured first (closed-loop
single-row Predict at concurrency 8), then open-loop load generators offer 3x that rate for
60 s (--quick: 15 s). Reported: p99 of the admitted calls, p99 of the refused ones (refused
at once, not queued until the deadline), the refused fraction and any other status, and
the replica's RSS growth (RSS a few seconds after the load ends minus RSS before it).

--soak MINUTES: mixed prediction traffic (unary, 16-row PredictBatch, 8-message
PredictStream, explained predictions, GetEndpointStats) on an endpoint that captures and
records its predictions, while the replica's RSS is sampled every few seconds; a
least-squares line through the samples of the soak's second half (caches fill during the
first) gives the growth in MB per hour.

--chaos: the whole suite (object store, every service; metadata in a private PostgreSQL when
its binaries exist) under mixed traffic from retrying clients (ingest + online reads,
predictions, annotations, model registrations, training jobs) while each service, the object
store and PostgreSQL are killed with SIGKILL and restarted, one at a time; then every
acknowledged write is read back and every job and published artifact checked (see
bench/_chaos_suite.py for the lanes and the checks).

    python bench/chaos.py                    # overload 60 s + a 5-minute soak + chaos
    python bench/chaos.py --chaos            # only the chaos run (--quick: shorter traffic)
    python bench/chaos.py --quick            # overload 15 s + 1-minute soak + short chaos
    python bench/chaos.py --overload --soak 30   # overload + a 30-minute soak

Writes bench/results/chaos.json (and a dated copy, see _results.py) with keys
overload_capacity_rps, overload_admitted_p99_ms, overload_rejected_fraction,
overload_rejected_p99_ms, overload_rss_growth_mb, soak_rss_growth_mb_per_hour, and from
--chaos acked_lost, jobs_lost, half_published and chaos_* (client errors per lane and per kill,
restart times). Keys of earlier runs that this run did not measure are kept.
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


# -- soak: mixed traffic (a spawned process, blocking gRPC in threads) -------------------------


def _mixed(target: str, seconds: float, threads: int, out: Any) -> None:
    import grpc

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
    from atlas_core.clients.serving import feature_row

    rows = [feature_row(r) for r in serving_bench._features()]
    stub = pb_grpc.ServingServiceStub(grpc.insecure_channel(target))
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def call(i: int) -> str:
        kind = i % 20
        if kind < 12:
            stub.Predict(pb.PredictRequest(endpoint_name="soak", row=rows[i % 64]), **kw)
            return "predict"
        if kind < 15:
            stub.PredictBatch(
                pb.PredictBatchRequest(endpoint_name="soak", rows=rows[i % 48 : i % 48 + 16]),
                **kw,
            )
            return "batch"
        if kind < 17:
            msgs = [
                pb.PredictStreamRequest(
                    endpoint_name="soak", row=rows[(i + k) % 64], correlation_id=str(k)
                )
                for k in range(8)
            ]
            assert len(list(stub.PredictStream(iter(msgs), **kw))) == 8
            return "stream"
        if kind < 19:
            stub.Predict(
                pb.PredictRequest(
                    endpoint_name="soak",
                    row=rows[i % 64],
                    options=pb.PredictOptions(explain=True, return_all_scores=True),
                ),
                **kw,
            )
            return "explain"
        stub.GetEndpointStats(pb.GetEndpointStatsRequest(name="soak"), **kw)
        return "stats"

    kw = {"metadata": META, "timeout": CALL_TIMEOUT_S}

    def loop(k: int) -> None:
        i = k * 7919
        mine: Counter[str] = Counter()
        while time.perf_counter() < end:
            try:
                mine[call(i)] += 1
            except grpc.RpcError as exc:
                mine[f"error_{exc.code().name}"] += 1  # type: ignore[attr-defined]
            i += 1
        with lock:
            counts.update(mine)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(dict(counts))


def soak(target: str, pid: int, minutes: float, warmup_s: float, every_s: float) -> dict:
    seconds = warmup_s + minutes * 60
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    gen = ctx.Process(target=_mixed, args=(target, seconds, 4, q))
    start = time.perf_counter()
    gen.start()
    samples: list[tuple[float, float]] = []
    while (t := time.perf_counter() - start) < seconds:
        samples.append((t, rss_mb(pid)))
        time.sleep(every_s)
    counts = q.get(timeout=120)
    gen.join(30)

    def growth(since: float) -> float:
        fit = [(t, r) for t, r in samples if t >= since]
        hours = np.array([t for t, _ in fit]) / 3600
        return float(np.polyfit(hours, np.array([r for _, r in fit]), 1)[0])

    fit = [(t, r) for t, r in samples if t >= warmup_s]
    # Caches fill for the first minutes (model outputs, capture buffers, statistics windows,
    # the prediction index buffer, allocator arenas), so the figure is the slope over the
    # second half of the soak; the slope over everything after the warm-up is kept beside it.
    half = warmup_s + minutes * 30
    return {
        "soak_minutes": minutes,
        "soak_warmup_s": warmup_s,
        "soak_sample_every_s": every_s,
        "soak_calls": counts,
        "soak_errors": sum(v for k, v in counts.items() if k.startswith("error_")),
        "soak_rss_start_mb": fit[0][1],
        "soak_rss_end_mb": fit[-1][1],
        "soak_rss_growth_mb_per_hour": growth(half),
        "soak_rss_growth_mb_per_hour_after_warmup": growth(warmup_s),
        "soak_rss_samples": [(round(t, 1), round(r, 1)) for t, r in samples],
    }


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
        if "soak" in parts:
            out.update(
                soak(target, pid, soak_minutes, 10.0 if quick else 30.0, 2.0 if quick else 5.0)
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
    args = parser.parse_args()
    # The flags choose sections; none means all three.
    parts = {
        name
        for name, chosen in (
            ("overload", args.overload),
            ("soak", args.soak is not None),
            ("chaos", args.chaos),
        )
        if chosen
    } or {"overload", "soak", "chaos"}
    minutes = args.soak if args.soak is not None else (1.0 if args.quick else 5.0)
    results = previous(args.quick)
    if parts - {"chaos"}:
        results.update(run(args.quick, minutes, parts - {"chaos"}))
    if "chaos" in parts:
        results.update(chaos(args.quick))
    results["bounds"] = {
        "overload_rss_growth_mb": RSS_BOUND_MB,
        "soak_rss_growth_mb_per_hour": SOAK_BOUND_MB_PER_HOUR,
        "acked_lost": 0,
        "jobs_lost": 0,
        "half_published": 0,
    }
    out = write_results("chaos", results, quick=args.quick)
    print(f"wrote {out}")
    shown = {k: v for k, v in results.items() if k != "soak_rss_samples"}
    print(json.dumps(shown, indent=2, default=str))


if __name__ == "__main__":
    main()

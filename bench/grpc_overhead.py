"""Cost of the server factory: the same small unary RPC on a bare grpc.aio server and on an
ATLAS server (auth + metrics + request ids/logging + error mapping + health + reflection).

Each server runs in its own process, the load generator in another; bare and atlas runs are
interleaved for several rounds so machine noise hits both alike.

    python bench/grpc_overhead.py            # full: 3 rounds x 5 s per (server, concurrency)
    python bench/grpc_overhead.py --quick    # 1 round x 2 s

Prints req/s and p50/p99 latency for both, with the ratio atlas/bare, and writes
bench/results/grpc_overhead.json (and a dated copy, see _results.py) with keys bare_rps, atlas_rps,
ratio (at concurrency 32), plus per-concurrency detail. Target: ratio >= 0.85.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

# The echo service used as the bare baseline lives with the test helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

TOKEN = "bench-token-0123456789"


async def _serve(kind: str) -> None:
    from grpc import aio

    from atlas_core.config import AuthSettings, ServerSettings
    from atlas_core.log import configure_logging
    from atlas_core.rpc import create_server
    from tests.support.echo import HANDLERS, SERVICE, echo_service

    if kind == "bare":
        server = aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, HANDLERS),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    else:
        configure_logging("INFO", service="bench")
        settings = ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"]}))
        atlas = create_server(settings, [echo_service()])
        await atlas.start()
        port, server = atlas.port, atlas
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until parent closes
    await server.stop(0)


async def _client(target: str, concurrency: int, seconds: float, token: str | None) -> None:
    from atlas_core.rpc import ClientSettings, connect
    from tests.support.echo import Req, Resp, method

    channel = connect(ClientSettings(target=target, token=token))
    call = channel.unary_unary(
        method("GetEcho"),
        request_serializer=Req.SerializeToString,
        response_deserializer=Resp.FromString,
    )
    for _ in range(200):  # warm-up
        await call(Req())
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await call(Req())
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await channel.close()
    print(json.dumps({"n": len(latencies), "elapsed": elapsed, "latencies": latencies}))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(kind: str, concurrency: int, seconds: float) -> dict[str, float]:
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [*me, "--serve", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        token = TOKEN if kind == "atlas" else None
        args = [*me, "--client", f"127.0.0.1:{port}", str(concurrency), str(seconds)]
        out = subprocess.run(
            args + ([token] if token else []), capture_output=True, text=True, check=True
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    lat = data["latencies"]
    return {
        "rps": data["n"] / data["elapsed"],
        "p50_ms": 1e3 * _pct(lat, 0.5),
        "p99_ms": 1e3 * _pct(lat, 0.99),
    }


def run(rounds: int, seconds: float) -> dict[str, object]:
    detail: dict[str, dict[str, dict[str, float]]] = {}
    for concurrency in (1, 32):
        samples: dict[str, list[dict[str, float]]] = {"bare": [], "atlas": []}
        for _ in range(rounds):
            for kind in ("bare", "atlas"):
                samples[kind].append(_measure(kind, concurrency, seconds))
        row = {}
        for kind, runs in samples.items():
            row[kind] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        row["ratio"] = {"rps": row["atlas"]["rps"] / row["bare"]["rps"]}
        detail[f"c{concurrency}"] = row
    c32 = detail["c32"]
    return {
        "bare_rps": c32["bare"]["rps"],
        "atlas_rps": c32["atlas"]["rps"],
        "ratio": c32["ratio"]["rps"],
        "rounds": rounds,
        "seconds_per_run": seconds,
        "detail": detail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve")
    parser.add_argument("--client", nargs="+")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    if args.client:
        target, conc, secs, *token = args.client
        asyncio.run(_client(target, int(conc), float(secs), token[0] if token else None))
        return
    result = run(*((1, 2.0) if args.quick else (3, 5.0)))
    print(f"{'concurrency':>11} {'server':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for key, row in result["detail"].items():  # type: ignore[union-attr]
        for kind in ("bare", "atlas"):
            r = row[kind]
            print(f"{key[1:]:>11} {kind:>6} {r['rps']:9.0f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f}")
        print(f"{key[1:]:>11} {'ratio':>6} {row['ratio']['rps']:9.3f}  (atlas/bare req/s)")
    out = write_results("grpc_overhead", result, quick=args.quick)
    verdict = "meets" if result["ratio"] >= 0.85 else "MISSES"
    print(f"ratio at concurrency 32: {result['ratio']:.3f} ({verdict} target 0.85) -> {out}")


if __name__ == "__main__":
    main()

"""GNN serving benchmark: node classification by node id through ATLAS serving.

A real graph service job generates an SBM graph (8 communities, degree 10), partitions it in
2 and trains GraphSAGE (fan-outs 10,10, 1 trainer against 2 graph servers, 2 epochs); the
train job's serving bundle (every node's class probabilities by original id) is registered
in an ATLAS serving replica (a subprocess, as `atlas up` runs it) and deployed; a load
generator process then sends single-row Predict requests for random node ids in a closed
loop at concurrency 1 (and 8); side by side, the same load against a bare grpc.aio server
that answers a fixed PredictResponse without any model (bench/serving.py's ceiling), so the
figure can be read against what gRPC in Python costs on the same host at the same moment.

    python bench/gnn_serving.py            # 20,000 nodes, 10 s per concurrency
    python bench/gnn_serving.py --quick    # 5,000 nodes, 3 s per concurrency

Writes bench/results/gnn_serving.json (and a dated copy, see _results.py) with keys
gnn_p99_ms_c1 (target <= 10 ms), gnn_p50_ms_c1, bare_p99_ms_c1, gnn_rps_c8, nodes,
bundle_bytes, cold_start_s, test_accuracy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402
from serving import TOKEN, _wait_serving, start_atlas, start_bare  # noqa: E402

CONCURRENCY = (1, 8)


def _worker(target: str, threads: int, seconds: float, nodes: int, out: mp.Queue) -> None:
    import grpc

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
    from atlas_core.clients.serving import feature_row

    rng = np.random.default_rng(threads)
    rows = [feature_row({"node_id": int(n)}) for n in rng.integers(0, nodes, 1024)]
    stub = pb_grpc.ServingServiceStub(grpc.insecure_channel(target))
    meta = [("authorization", f"Bearer {TOKEN}")]
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    for _ in range(20):  # warm-up
        stub.Predict(pb.PredictRequest(endpoint_name="gnn", row=rows[0]), metadata=meta)
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        mine: list[float] = []
        i = k * 97
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                stub.Predict(
                    pb.PredictRequest(endpoint_name="gnn", row=rows[i % len(rows)]),
                    metadata=meta,
                    timeout=10,
                )
                mine.append(time.perf_counter() - t)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
            i += 1
        with lock:
            lat.extend(mine)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((lat, errors[0]))


def load(target: str, concurrency: int, seconds: float, nodes: int) -> dict:
    """Closed-loop load from one generator process (blocking gRPC, one thread per client)."""
    q: mp.Queue = mp.Queue()
    proc = mp.Process(target=_worker, args=(target, concurrency, seconds, nodes, q))
    proc.start()
    lat, errors = q.get()
    proc.join()
    arr = np.array(lat) * 1000
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "errors": errors,
    }


def train_graph(tmp: Path, s3: object, nodes: int) -> dict:
    """Generate, partition and train through the graph service's job runner; the train
    job's result (serving_bundle, metrics)."""
    from atlas.common.v1 import common_pb2
    from atlas.graph.v1 import graph_service_pb2 as pb
    from atlas_core.bundle_signing import ensure_local_keypair
    from atlas_core.config import BundleSettings, DatabaseSettings, JobSettings
    from atlas_core.jobs import JobState
    from atlas_graph.config import GraphSettings
    from atlas_graph.jobs import KIND_GENERATE, KIND_PARTITION, KIND_TRAIN
    from atlas_graph.service import GraphService

    # Signed with the key start_atlas(tmp)'s replicas trust (tmp/secrets).
    signing_key, _ = ensure_local_keypair(tmp / "secrets")
    settings = GraphSettings(
        s3=s3,  # type: ignore[arg-type]
        data_dir=tmp / "graph",
        bundles=BundleSettings(signing_key_file=signing_key),
        database=DatabaseSettings(url=f"sqlite:///{tmp / 'graph.db'}"),
        jobs=JobSettings(max_concurrent=1, runner_id="bench-gnn"),
    )
    service = GraphService.open(settings)
    service.start()

    def run(kind: str, spec: object) -> dict:
        record = service.submit(kind, spec)
        done = service.jobs.wait(record.id, timeout=1800)
        if done.state is not JobState.SUCCEEDED:
            raise RuntimeError(f"{kind} job failed: {done.error}")
        return done.result  # type: ignore[return-value]

    try:
        graph = run(
            KIND_GENERATE,
            pb.GenerateGraphSpec(
                name="bench-sbm", nodes=nodes, communities=8, average_degree=10, seed=7
            ),
        )["graph"]
        part = run(
            KIND_PARTITION, pb.PartitionGraphSpec(graph_id=graph["graph_id"], num_partitions=2)
        )["partitioning"]
        started = time.perf_counter()
        result = run(
            KIND_TRAIN,
            pb.TrainGraphSpec(
                ref=common_pb2.GraphRef(
                    graph_id=graph["graph_id"], partitioning_id=part["partitioning_id"]
                ),
                num_trainers=1,
                fan_outs=[10, 10],
                hidden_dims=64,
                epochs=2,
                batch_size=1024,
                learning_rate=0.01,
            ),
        )["train_result"]
        result["train_job_s"] = time.perf_counter() - started
        return result
    finally:
        service.stop()


def run_all(nodes: int, seconds: float) -> dict:
    from pydantic import SecretStr

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas_core.clients.serving import ServingClient
    from atlas_core.config import S3Settings
    from atlas_core.launcher import SeaweedS3Server
    from atlas_core.rpc import ClientSettings

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-gnn-"))
    weed = SeaweedS3Server(
        tmp / "weed",
        access_key="bench",
        secret_key="bench-secret-key",
        port=0,
        log_dir=tmp / "weed-logs",
    )
    weed.start(timeout=60)
    procs = []
    out: dict = {"nodes": nodes, "seconds_per_concurrency": seconds}
    try:
        s3 = S3Settings(
            endpoint=weed.endpoint,
            access_key=SecretStr("bench"),
            secret_key=SecretStr("bench-secret-key"),
            bucket="bench",
        )
        trained = train_graph(tmp, s3, nodes)
        bundle = trained["serving_bundle"]
        out["test_accuracy"] = trained["metrics"]["test_accuracy"]
        out["train_job_s"] = trained["train_job_s"]
        out["bundle_bytes"] = bundle["size_bytes"]
        print(
            f"trained: test accuracy {out['test_accuracy']:.3f}, serving bundle "
            f"{bundle['size_bytes'] / 1e6:.2f} MB, job {out['train_job_s']:.0f} s",
            flush=True,
        )
        procs, target = start_atlas(tmp, s3)
        _wait_serving(target)
        client = ServingClient(ClientSettings(target=target, token=SecretStr(TOKEN)))
        client.register("gnn", bundle["uri"])
        variant = pb.Variant(name="blue", role=pb.VARIANT_ROLE_LIVE, weight=100)
        variant.model.model_name, variant.model.version = "gnn", 1
        client.create_endpoint(pb.EndpointSpec(name="gnn", variants=[variant]))
        client.predict("gnn", {"node_id": 0})
        time.sleep(0.6)
        out["cold_start_s"] = client.stats("gnn")[0].last_cold_start.ToNanoseconds() / 1e9
        bare_proc, bare_target = start_bare()
        procs.append(bare_proc)
        table = {}
        for c in CONCURRENCY:
            table[f"atlas_c{c}"] = load(target, c, seconds, nodes)
            table[f"bare_c{c}"] = load(bare_target, c, seconds, nodes)
        out["detail"] = table
        out["gnn_p99_ms_c1"] = table["atlas_c1"]["p99_ms"]
        out["gnn_p50_ms_c1"] = table["atlas_c1"]["p50_ms"]
        out["bare_p99_ms_c1"] = table["bare_c1"]["p99_ms"]
        out["gnn_rps_c8"] = table["atlas_c8"]["rps"]
        print(f"{'server':<6} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for c in CONCURRENCY:
            for kind in ("atlas", "bare"):
                r = table[f"{kind}_c{c}"]
                print(
                    f"{kind:<6} {c:>4} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                    f"{r['p99_ms']:>8.2f} {r['errors']:>6}"
                )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except Exception:  # noqa: BLE001 - a replica slow to stop is killed
                p.kill()
        weed.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = run_all(5_000 if args.quick else 20_000, 3.0 if args.quick else 10.0)
    path = write_results("gnn_serving", results, quick=args.quick)
    print(f"wrote {path}")
    keys = (
        "gnn_p99_ms_c1",
        "gnn_p50_ms_c1",
        "bare_p99_ms_c1",
        "gnn_rps_c8",
        "cold_start_s",
        "test_accuracy",
    )
    print(json.dumps({k: results[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()

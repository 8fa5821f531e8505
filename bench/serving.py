"""Serving benchmark: an XGBoost model (100 trees, 30 features, breast_cancer) deployed on
ATLAS serving, single-row Predict at closed-loop concurrency 1, 8, 32, 64 from load-generator
processes; side by side, a bare grpc.aio server answering a same-sized PredictResponse without
a model (the framework ceiling). Also: cold start of a 10 MB bundle, and a canary rollout of
an erroring candidate (requests failed, seconds from the first failure to rollback).

The model is trained by the trainer's AutoML engine (XGBoost fixed at 100 trees, one trial,
its preprocessing pipeline included) and written with atlas_core.bundles.write_bundle, as a
training job writes it.

    python bench/serving.py            # 5 s per (server, concurrency)
    python bench/serving.py --quick    # 2 s per (server, concurrency)
    python bench/serving.py --quality  # the endpoint records every prediction for ground
                                       # truth (QualityConfig): the cost of the index

Writes bench/results/serving.json (and a dated copy, see _results.py) with keys p99_c1_ms, rps_c64,
bare_rps_c64, bentoml_rps_c64, cold_start_s, rollback_s, rollout_failed_pct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-serving-token-0123"
CONCURRENCY = (1, 8, 32, 64)


def _features() -> list[dict[str, float]]:
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer(as_frame=True).data
    X.columns = [c.replace(" ", "_") for c in X.columns]
    return X.iloc[:64].to_dict("records")


class FailsOnline:
    """A model that works on its training frame but fails on small online batches: the kind
    of bug a canary exists to catch (pickled as bench.serving.FailsOnline)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.classes_ = inner.classes_  # type: ignore[attr-defined]

    def predict(self, X: object) -> object:
        self._check(X)
        return self.inner.predict(X)  # type: ignore[attr-defined]

    def predict_proba(self, X: object) -> object:
        self._check(X)
        return self.inner.predict_proba(X)  # type: ignore[attr-defined]

    @staticmethod
    def _check(X: object) -> None:
        if len(X) < 500:  # type: ignore[arg-type]
            raise RuntimeError("feature store column mismatch")


# -- load generator (separate processes, blocking gRPC in threads) ----------------------------


def _worker(target: str, threads: int, seconds: float, endpoint: str, out: mp.Queue) -> None:
    import grpc

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
    from atlas_core.clients.serving import feature_row

    rows = [feature_row(r) for r in _features()]
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.ServingServiceStub(channel)
    meta = [("authorization", f"Bearer {TOKEN}")]
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        mine: list[float] = []
        i = k
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                stub.Predict(
                    pb.PredictRequest(endpoint_name=endpoint, row=rows[i % 64]),
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

    for _ in range(2):  # warm-up
        stub.Predict(pb.PredictRequest(endpoint_name=endpoint, row=rows[0]), metadata=meta)
    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((lat, errors[0]))


def load(target: str, concurrency: int, seconds: float, endpoint: str = "bc") -> dict:
    procs_n = min(4, concurrency)
    q: mp.Queue = mp.Queue()
    per = [concurrency // procs_n + (1 if i < concurrency % procs_n else 0) for i in range(procs_n)]
    procs = [mp.Process(target=_worker, args=(target, n, seconds, endpoint, q)) for n in per]
    for p in procs:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in procs:
        part, err = q.get()
        lat += part
        errors += err
    for p in procs:
        p.join()
    arr = np.array(lat) * 1000
    return {
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "errors": errors,
    }


# -- the bare ceiling -------------------------------------------------------------------------


async def _bare(port_file: str) -> None:
    from grpc import aio

    from atlas.common.v1 import common_pb2
    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc

    reply = pb.PredictResponse(
        prediction=pb.Prediction(label="1", value=0.97, scores={"1": 0.97}),
        model=common_pb2.ModelRef(model_name="bc", version=1),
        variant="blue",
        prediction_id="0" * 32,
    )

    class Bare(pb_grpc.ServingServiceServicer):
        async def Predict(self, request, context):  # type: ignore[no-untyped-def]
            return reply

    server = aio.server()
    pb_grpc.add_ServingServiceServicer_to_server(Bare(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(port_file).write_text(str(port))
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quality", action="store_true", help="record predictions (index)")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        asyncio.run(_bare(args.bare))
        return
    seconds = 2.0 if args.quick else 5.0
    results = run_all(seconds, quality=args.quality)
    name = "serving_quality" if args.quality else "serving"
    out = write_results(name, results, quick=args.quick)
    print(f"wrote {out}")
    print(
        json.dumps(
            {
                k: results[k]
                for k in (
                    "p99_c1_ms",
                    "rps_c64",
                    "bare_rps_c64",
                    "bentoml_rps_c64",
                    "cold_start_s",
                    "rollback_s",
                    "rollout_failed_pct",
                )
            },
            indent=2,
        )
    )


def start_atlas(
    tmp: Path, s3: object, n: int = 1, env: dict[str, str] | None = None
) -> tuple[list[subprocess.Popen], str]:
    """ATLAS serving replicas as subprocesses (python -m atlas_serving) on free ports
    (``env``: extra settings)."""
    import socket

    procs, addrs = [], []
    for i in range(n):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = dict(
            os.environ,
            PYTHONPATH=f"{ROOT}:{ROOT / 'src'}:{ROOT / 'services' / 'serving'}",
            ATLAS_SERVING_SERVER__PORT=str(port),
            ATLAS_SERVING_SERVER__METRICS_PORT="null",
            ATLAS_SERVING_SERVER__LOG_LEVEL="WARNING",
            ATLAS_SERVING_SERVER__AUTH__TOKENS=json.dumps({TOKEN: ["*"]}),
            ATLAS_SERVING_S3__ENDPOINT=s3.endpoint,  # type: ignore[attr-defined]
            ATLAS_SERVING_S3__BUCKET=s3.bucket,  # type: ignore[attr-defined]
            ATLAS_SERVING_S3__ACCESS_KEY=s3.access_key.get_secret_value(),  # type: ignore[attr-defined]
            ATLAS_SERVING_S3__SECRET_KEY=s3.secret_key.get_secret_value(),  # type: ignore[attr-defined]
            ATLAS_SERVING_DATABASE__URL=f"sqlite:///{tmp / 'serving.db'}",
            ATLAS_SERVING_DATA_DIR=str(tmp / f"r{i}"),
            # the key _signer(tmp) signs with
            ATLAS_SERVING_BUNDLES__TRUSTED_KEYS=json.dumps(
                [str(tmp / "secrets" / "bundle-signing.pub")]
            ),
            ATLAS_SERVING_RUNTIME__REPLICA_ID=f"bench-{i}",
            ATLAS_SERVING_JOBS__RUNNER_ID=f"bench-{i}",
        )
        settings.update(env or {})  # the caller's settings win (e.g. another trusted key)
        procs.append(
            subprocess.Popen([sys.executable, "-m", "atlas_serving"], env=settings, cwd=tmp)
        )
        addrs.append(f"127.0.0.1:{port}")
    return procs, ",".join(addrs)


def _wait_serving(target: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for addr in target.split(","):
        channel = grpc.insecure_channel(addr)
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(600):
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    break
            except grpc.RpcError:
                time.sleep(0.1)
        channel.close()


_TRAINED: dict[str, object] = {}


def trainer_model() -> object:
    """XGBoost (100 trees, depth 4) on breast_cancer's 30 features, trained by the trainer's
    AutoML engine as a training job runs it (families and model parameters fixed, one trial,
    no ensemble): the bundle holds the engine's whole pipeline, preprocessing included."""
    if "model" not in _TRAINED:
        from sklearn.datasets import load_breast_cancer

        from atlas_trainer.automl import AutoMLRequest, run_automl

        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        X.columns = [c.replace(" ", "_") for c in X.columns]
        result = run_automl(
            AutoMLRequest(
                X,
                y,
                task="binary",
                max_trials=1,
                strategy="tpe",
                families=["xgboost"],
                ensemble=False,
                seed=0,
                allow_crosses=False,
                allow_selection=False,
                fixed_params={"xgb.n_estimators": 100, "xgb.max_depth": 4},
            )
        )
        _TRAINED["model"] = result.model
        _TRAINED["pipeline"] = result.leaderboard[0].pipeline
    return _TRAINED["model"]


def _signer(tmp: Path) -> object:
    """The bench's bundle signing key (``tmp/secrets``), which its replicas trust."""
    from atlas_core.bundle_signing import bundle_signer
    from atlas_core.config import BundleSettings

    return bundle_signer(BundleSettings(), tmp)


def _bundle(
    store: object, key: str, signer: object, *, model: object = None, pad_to: int = 0
) -> object:
    from sklearn.datasets import load_breast_cancer

    from atlas_core.bundles import write_bundle

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    extra = {"padding.bin": os.urandom(pad_to)} if pad_to else None
    return write_bundle(
        store,
        key,
        model=model or trainer_model(),
        task="binary",  # type: ignore[arg-type]
        target="target",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
        extra_files=extra,
        signer=signer,  # type: ignore[arg-type]
    )


def run_all(seconds: float, quality: bool = False) -> dict:
    from pydantic import SecretStr

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas_core.clients.serving import ServingClient
    from atlas_core.config import S3Settings
    from atlas_core.launcher import SeaweedS3Server
    from atlas_core.rpc import ClientSettings
    from atlas_core.storage import open_artifact_store

    sys.path.insert(0, str(ROOT))
    from bench.serving import FailsOnline  # by module name: the replica unpickles it

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-serving-"))
    weed = SeaweedS3Server(
        tmp / "weed",
        access_key="bench",
        secret_key="bench-secret-key",
        port=0,
        log_dir=tmp / "weed-logs",
    )
    weed.start(timeout=60)
    procs: list[subprocess.Popen] = []
    out: dict = {
        "command": "python bench/serving.py"
        + (" --quick" if seconds < 5 else "")
        + (" --quality" if quality else ""),
        "quality_recording": quality,
        "bundle": "trainer AutoML engine, XGBoost 100 trees, 30 features",
    }
    try:
        s3 = S3Settings(
            endpoint=weed.endpoint,
            access_key=SecretStr("bench"),
            secret_key=SecretStr("bench-secret-key"),
            bucket="bench",
        )
        store = open_artifact_store(s3)
        ref = _bundle(store, "models/bc/v1.tar", _signer(tmp))
        out["pipeline"] = _TRAINED["pipeline"]
        print(f"model: {out['pipeline']}", flush=True)
        procs, target = start_atlas(tmp, s3)
        _wait_serving(target)
        client = ServingClient(ClientSettings(target=target, token=SecretStr(TOKEN)))
        client.register("bc", ref.uri)  # type: ignore[attr-defined]
        variant = pb.Variant(name="blue", role=pb.VARIANT_ROLE_LIVE, weight=100)
        variant.model.model_name, variant.model.version = "bc", 1
        spec = pb.EndpointSpec(name="bc", variants=[variant])
        spec.quality.enabled = quality
        client.create_endpoint(spec)
        # cold start: a fresh 10 MB bundle behind its own endpoint, first request loads it
        big = _bundle(store, "models/big/v1.tar", _signer(tmp), pad_to=10 * 1024 * 1024)
        client.register("big", big.uri)  # type: ignore[attr-defined]
        cold = pb.Variant(name="a", role=pb.VARIANT_ROLE_LIVE, weight=100)
        cold.model.model_name, cold.model.version = "big", 1
        client.create_endpoint(pb.EndpointSpec(name="big", variants=[cold]))
        row = _features()[0]
        t = time.perf_counter()
        client.predict("big", row)
        out["cold_start_first_request_s"] = time.perf_counter() - t
        time.sleep(0.6)
        stats = client.stats("big")[0]
        out["cold_start_s"] = stats.last_cold_start.ToNanoseconds() / 1e9
        out["cold_start_bundle_bytes"] = big.size  # type: ignore[attr-defined]

        bare_proc, bare_target = start_bare()
        procs.append(bare_proc)
        table = {}
        for c in CONCURRENCY:
            table[f"atlas_c{c}"] = load(target, c, seconds)
            table[f"bare_c{c}"] = load(bare_target, c, seconds)
        out["detail"] = table
        out["p99_c1_ms"] = table["atlas_c1"]["p99_ms"]
        out["rps_c64"] = table["atlas_c64"]["rps"]
        out["bare_rps_c64"] = table["bare_c64"]["rps"]
        bento = run_bentoml(tmp, seconds)
        table.update(bento.pop("detail", {}))
        out.update(bento)
        print(f"{'server':<8} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for c in CONCURRENCY:
            for kind in ("atlas", "bare", "bentoml"):
                r = table.get(f"{kind}_c{c}")
                if r is None:
                    continue
                print(f"{kind:<8} {c:>4} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
            ratio = table[f"atlas_c{c}"]["rps"] / table[f"bare_c{c}"]["rps"]
            print(f"{'ratio':<8} {c:>4} {ratio:>9.2f}")
        out.update(_rollback(client, store, _signer(tmp), target, FailsOnline))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        weed.stop()
    return out


def _rollback(client: object, store: object, signer: object, target: str, faulty: type) -> dict:
    """Canary (10%) of an erroring model under load at concurrency 8."""
    from google.protobuf import duration_pb2
    from sklearn.datasets import load_breast_cancer
    from xgboost import XGBClassifier

    from atlas.serving.v1 import serving_service_pb2 as pb

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    bad = _bundle(
        store,
        "models/bc/bad.tar",
        signer,
        model=faulty(XGBClassifier(n_estimators=10, n_jobs=1).fit(X, y)),
    )
    client.register("bc", bad.uri)  # type: ignore[attr-defined]
    variant = pb.Variant(name="green", role=pb.VARIANT_ROLE_LIVE, weight=100)
    variant.model.model_name, variant.model.version = "bc", 2
    bake = duration_pb2.Duration(seconds=60)
    window = duration_pb2.Duration(seconds=5)
    q: mp.Queue = mp.Queue()
    gen = mp.Process(target=_worker, args=(target, 8, 12.0, "bc", q))
    gen.start()
    time.sleep(1.0)
    dep = client.deploy(
        "bc",
        [variant],
        policy=pb.TrafficPolicy(  # type: ignore[attr-defined]
            canary=pb.CanaryPolicy(canary_percent=10, bake_time=bake)
        ),
        alarms=pb.AlarmConfig(max_error_rate=0.05, min_requests=20, window=window),
    )
    final = client.wait_deployment(dep.deployment_id, timeout=60)  # type: ignore[attr-defined]
    lat, errors = q.get()
    gen.join()
    total = len(lat) + errors
    shifted = final.create_time.ToNanoseconds() / 1e9
    ended = final.end_time.ToNanoseconds() / 1e9
    fired = final.alarm_events[0].fire_time.ToNanoseconds() / 1e9 if final.alarm_events else 0
    return {
        "rollback_state": pb.DeploymentState.Name(final.state),
        "rollback_s": ended - shifted,
        "alarm_to_rollback_s": ended - fired if fired else None,
        "rollout_failed_pct": 100.0 * errors / total if total else None,
        "rollout_requests": total,
        "rollout_failed": errors,
    }


# -- BentoML side by side (its own throwaway venv) ---------------------------------------------

BENTO_VENV = Path("/tmp/atlas-bench-bentoml")
BENTO_SERVICE = """
import bentoml
import numpy as np
import xgboost as xgb


@bentoml.service(workers=1)
class BreastCancer:
    def __init__(self) -> None:
        self.model = xgb.XGBClassifier()
        self.model.load_model("bc.json")

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)
"""


def _bento_python() -> tuple[Path | None, str]:
    python = BENTO_VENV / "bin" / "python"
    check = [str(python), "-c", "import bentoml, xgboost"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(BENTO_VENV)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        done = subprocess.run(
            [
                str(BENTO_VENV / "bin" / "pip"),
                "install",
                "-q",
                "bentoml",
                "xgboost",
                "scikit-learn",
                "pandas",
            ],
            capture_output=True,
            timeout=900,
            text=True,
        )
        if done.returncode != 0:
            return None, f"pip install bentoml failed: {done.stderr.strip()[-300:]}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create {BENTO_VENV}: {exc}"
    return python, ""


def _http_worker(port: int, threads: int, seconds: float, out: mp.Queue) -> None:
    import http.client

    bodies = [json.dumps({"x": [list(r.values())]}).encode() for r in _features()]
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        i = k
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                conn.request(
                    "POST", "/predict", bodies[i % 64], {"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise OSError(resp.status)
                mine.append(time.perf_counter() - t)
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            i += 1
        with lock:
            lat.extend(mine)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((lat, errors[0]))


def _http_load(port: int, concurrency: int, seconds: float) -> dict:
    procs_n = min(4, concurrency)
    q: mp.Queue = mp.Queue()
    per = [concurrency // procs_n + (1 if i < concurrency % procs_n else 0) for i in range(procs_n)]
    procs = [mp.Process(target=_http_worker, args=(port, n, seconds, q)) for n in per]
    for p in procs:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in procs:
        part, err = q.get()
        lat += part
        errors += err
    for p in procs:
        p.join()
    arr = np.array(lat or [float("nan")]) * 1000
    return {
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "errors": errors,
    }


def run_bentoml(tmp: Path, seconds: float) -> dict:
    """BentoML serving the same XGBoost (adaptive batching on); never raises."""
    import socket
    import urllib.request

    python, why = _bento_python()
    if python is None:
        return {"bentoml_rps_c64": None, "bentoml_note": why}
    from sklearn.datasets import load_breast_cancer
    from xgboost import XGBClassifier

    work = tmp / "bentoml"
    work.mkdir(exist_ok=True)
    X, y = load_breast_cancer(return_X_y=True)
    XGBClassifier(n_estimators=100, max_depth=4, n_jobs=1).fit(X, y).save_model(
        str(work / "bc.json")
    )
    (work / "service.py").write_text(BENTO_SERVICE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, BENTOML_HOME=str(work / "home"), BENTOML_DO_NOT_TRACK="True")
    proc = subprocess.Popen(
        [
            str(python),
            "-m",
            "bentoml",
            "serve",
            "service:BreastCancer",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "serve.log").open("w"),
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    return {
                        "bentoml_rps_c64": None,
                        "bentoml_note": "bentoml serve exited: "
                        + (work / "serve.log").read_text()[-300:],
                    }
                time.sleep(0.2)
        else:
            return {"bentoml_rps_c64": None, "bentoml_note": "bentoml serve never got ready"}
        detail = {f"bentoml_c{c}": _http_load(port, c, seconds) for c in CONCURRENCY}
        version = subprocess.run(
            [str(python), "-c", "import bentoml; print(bentoml.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return {
            "bentoml_rps_c64": detail["bentoml_c64"]["rps"],
            "bentoml_p99_c64_ms": detail["bentoml_c64"]["p99_ms"],
            "bentoml_note": f"bentoml {version}, 1 worker, adaptive batching "
            "(max 64 rows, 1 s latency budget), HTTP/JSON; errors per "
            "level in detail",
            "detail": detail,
        }
    except Exception as exc:  # noqa: BLE001 - the peer must never crash the benchmark
        return {"bentoml_rps_c64": None, "bentoml_note": f"bentoml run failed: {exc}"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_bare() -> tuple[subprocess.Popen, str]:
    port_file = tempfile.mktemp(prefix="atlas-bare-port-")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--bare", port_file], env=dict(os.environ, PYTHONPATH=str(ROOT))
    )
    while not Path(port_file).exists():
        time.sleep(0.05)
    time.sleep(0.1)
    return proc, f"127.0.0.1:{Path(port_file).read_text()}"


if __name__ == "__main__":
    main()

"""Serving what AutoML picks: for each dataset of bench/automl.py, the AutoML winner is
written as a training job writes it (the fold-bagged model, and beside it the refit-full
version: each member refit once on all rows) and served by three serving replicas side by
side in one run:

- ``today``: ``runtime.compile_models=false`` and ``refit_full_tolerance=-1`` (the
  fold-bagged model; XGBoost trees compiled, every other family scored by its own library
  per call: the path before 2026-12-07);
- ``compiled``: every family compiled (verified before use), the fold-bagged model
  (``refit_full_tolerance=-1``);
- ``refit_full``: the default settings (compiled; the refit-full version when its
  cross-validated estimate is within ``refit_full_tolerance`` of the fold-bagged one's).

Per replica: single-row Predict p50/p99 at concurrency 1, req/s at concurrency 64, rows/s of
one 10,000-row PredictBatch, and the test metric of the served answers (PredictBatch on the
held-out 25 %). The 100-tree XGBoost pipeline of bench/serving.py is served by the compiled
replica in the same run as the reference, measured right after each dataset (the load of a
shared machine drifts; ratios within a dataset are what to compare).

    python bench/serving_automl.py                       # nine datasets, 120 s AutoML each
    python bench/serving_automl.py --quick               # breast_cancer + diabetes, 20 s
    python bench/serving_automl.py --datasets wine --budget 60 --seconds 3
    python bench/serving_automl.py --autogluon /work/venvs/autogluon   # + AutoGluon side by side

``--autogluon VENV``: AutoGluon (its own venv: ``python -m venv VENV`` and
``VENV/bin/pip install autogluon.tabular``) fits the same training rows within the same
budget, then ``refit_full`` + ``persist``, and its single-row latency is timed in process
(bench/_autogluon_latency.py) against ours over gRPC.

Writes bench/results/serving_automl.json: ``winner_p99_c1_ms_max`` (worst dataset, default
path: ``refit_full``), ``winner_p99_c1_ms_median``, ``winner_rps_c64_min_vs_xgb`` (worst
dataset's c64 throughput over the XGBoost pipeline's), ``quality_loss_max`` (worst relative
test-metric loss of the served answers against the fold-bagged winner scored in process),
and per-dataset detail (with the trainer's estimates and measured costs of both versions).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402
from automl import DATASETS, METRIC, split, test_score  # noqa: E402
from serving import TOKEN, _bundle, _signer, _wait_serving, start_atlas  # noqa: E402

warnings.filterwarnings("ignore")
QUICK = ("breast_cancer", "diabetes")
HIGHER = {"roc_auc": True, "log_loss": False, "rmse": False}
BATCH_ROWS = 10_000
# (replica, runtime.compile_models, runtime.refit_full_tolerance; "" = the default)
REPLICAS = (("today", "false", "-1"), ("compiled", "true", "-1"), ("refit_full", "true", ""))
DEFAULT = "refit_full"


def _records(X: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: missing values as None, numbers as Python numbers."""
    out = X.astype(object).where(X.notna(), None).to_dict("records")
    return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in out]


# -- load generator (separate processes, blocking gRPC in threads) ----------------------------


def _worker(
    target: str, threads: int, seconds: float, endpoint: str, rows: list[dict], out: mp.Queue
) -> None:
    import grpc

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
    from atlas_core.clients.serving import feature_row

    requests = [pb.PredictRequest(endpoint_name=endpoint, row=feature_row(r)) for r in rows]
    stub = pb_grpc.ServingServiceStub(grpc.insecure_channel(target))
    meta = [("authorization", f"Bearer {TOKEN}")]
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    for _ in range(20):  # warm-up
        stub.Predict(requests[0], metadata=meta)
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        mine: list[float] = []
        i = k
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                stub.Predict(requests[i % len(requests)], metadata=meta, timeout=10)
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


def load(target: str, endpoint: str, rows: list[dict], concurrency: int, seconds: float) -> dict:
    procs_n = min(4, concurrency)
    q: mp.Queue = mp.Queue()
    per = [concurrency // procs_n + (1 if i < concurrency % procs_n else 0) for i in range(procs_n)]
    procs = [mp.Process(target=_worker, args=(target, n, seconds, endpoint, rows, q)) for n in per]
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
        "calls": len(lat),
        "errors": errors,
    }


# -- one dataset ------------------------------------------------------------------------------


def _scores(client: Any, endpoint: str, rows: list[dict], task: str, classes: list[str]) -> Any:
    """The served answers for ``rows`` (PredictBatch, all class scores)."""
    out = []
    for start in range(0, len(rows), BATCH_ROWS):
        resp = client.predict_batch(endpoint, rows[start : start + BATCH_ROWS], all_scores=True)
        for r in resp.predictions:
            if task == "regression":
                out.append(r.value)
            else:
                out.append([r.scores[c] for c in classes])
    return np.asarray(out, dtype=np.float64)


def _relative_loss(metric: str, reference: float, served: float) -> float:
    if HIGHER[metric]:
        return (reference - served) / abs(reference)
    return (served - reference) / abs(reference)


def run_dataset(
    name: str,
    budget: float,
    seconds: float,
    replicas: dict[str, tuple[Any, str]],
    store: Any,
    signer: Any,
    autogluon: Path | None = None,
) -> dict[str, Any]:
    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas_core.bundles import write_bundle
    from atlas_trainer.automl import AutoMLRequest, run_automl

    task, loader = DATASETS[name]
    X, y = loader()
    Xtr, Xte, ytr, yte = split(X, y, task)
    start = time.perf_counter()
    result = run_automl(AutoMLRequest(Xtr, ytr, task=task, wall_budget_s=budget, n_jobs=2, seed=0))
    fit_s = time.perf_counter() - start
    bagged, refit = result.versions["fold_bag"], result.versions.get("refit_full")
    model = bagged.model
    metric = METRIC[task]
    classes = [] if task == "regression" else list(model.classes_)

    def test_metric(m: Any) -> float:
        pred = m.predict(Xte) if task == "regression" else m.predict_proba(Xte)
        return float(test_score(metric, yte.to_numpy(), pred, classes))

    reference = test_metric(model)
    higher = result.higher_is_better
    ref = write_bundle(
        store,
        f"models/{name}/v1.tar",
        model=model,
        task=task,
        target="target",
        classes=classes or None,
        X_train=Xtr,
        y_train=ytr,
        metrics={},
        lineage={},
        signer=signer,
        variant=bagged.facts(higher),
        variants={"refit_full": (refit.model, refit.facts(higher))} if refit else None,
    )
    versions = {
        v.name: {
            **{k: x for k, x in v.facts(higher).items() if k != "description"},
            "test_metric": test_metric(v.model),
        }
        for v in result.versions.values()
    }
    test_rows = _records(Xte)
    load_rows = test_rows[:256]
    batch_rows = [test_rows[i % len(test_rows)] for i in range(BATCH_ROWS)]
    out: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "rows_train": len(Xtr),
        "features": X.shape[1],
        "automl_fit_s": round(fit_s, 1),
        "winner": model.description,
        "winner_test_metric": reference,
        "versions": versions,
    }
    label_names = [str(c) for c in classes]
    endpoint = name.lower().replace("_", "-")  # model and endpoint names are DNS-like
    for kind, (client, target) in replicas.items():
        client.register(endpoint, ref.uri)
        variant = pb.Variant(name="live", role=pb.VARIANT_ROLE_LIVE, weight=100)
        variant.model.model_name, variant.model.version = endpoint, 1
        client.create_endpoint(pb.EndpointSpec(name=endpoint, variants=[variant]))
        t = time.perf_counter()
        first = client.predict(endpoint, load_rows[0])
        first_s = time.perf_counter() - t
        version = first.served_version  # which version answered, why, how it was scored
        served = _scores(client, endpoint, test_rows, task, label_names)
        served_metric = test_score(metric, yte.to_numpy(), served, classes)
        c1 = load(target, endpoint, load_rows, 1, seconds)
        c64 = load(target, endpoint, load_rows, 64, seconds)
        t = time.perf_counter()
        client.predict_batch(endpoint, batch_rows)
        batch_s = time.perf_counter() - t
        out[kind] = {
            "first_request_s": first_s,
            "c1": c1,
            "c64": c64,
            "batch_rows_per_s": BATCH_ROWS / batch_s,
            "test_metric": served_metric,
            "quality_loss": _relative_loss(metric, reference, served_metric),
            "served_version": {
                "name": version.name,
                "scoring": version.scoring,
                "reason": version.reason,
            },
        }
        client.delete_endpoint(endpoint)
        print(
            f"{name:<14} {kind:<9} p50 {c1['p50_ms']:7.2f} ms  p99 {c1['p99_ms']:7.2f} ms  "
            f"c64 {c64['rps']:7.0f} req/s  batch {BATCH_ROWS / batch_s:9.0f} rows/s  "
            f"{metric} {served_metric:.4f} (in process {reference:.4f})  "
            f"[{version.name or '-'}, {version.scoring}]",
            flush=True,
        )
    if autogluon is not None:
        out["autogluon"] = _autogluon(autogluon, name, task, budget, Xtr, ytr, Xte, yte, classes)
        ag = out["autogluon"]
        print(
            f"{name:<14} {'autogluon':<9} p50 {ag['p50_ms']:7.2f} ms  p99 {ag['p99_ms']:7.2f} ms"
            f"  (in process, refit_full + persist)  {metric} {ag['test_metric']:.4f}",
            flush=True,
        )
    return out


def _autogluon(
    venv: Path,
    name: str,
    task: str,
    budget: float,
    Xtr: pd.DataFrame,
    ytr: pd.Series,
    Xte: pd.DataFrame,
    yte: pd.Series,
    classes: list[Any],
) -> dict[str, Any]:
    """AutoGluon on the same rows in its own venv (bench/_autogluon_latency.py)."""
    with tempfile.TemporaryDirectory(prefix=f"atlas-bench-ag-{name}-") as tmp:
        folder = Path(tmp)
        Xtr.assign(target=ytr.to_numpy()).to_csv(folder / "train.csv", index=False)
        Xte.assign(target=yte.to_numpy()).to_csv(folder / "test.csv", index=False)
        script = Path(__file__).resolve().parent / "_autogluon_latency.py"
        done = subprocess.run(
            [str(venv / "bin" / "python"), str(script), str(folder), task, str(budget), "300"],
            capture_output=True,
            text=True,
            timeout=budget * 4 + 600,
            check=True,
        )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    pred = np.asarray(found.pop("test_pred"), dtype=np.float64)
    found["test_metric"] = test_score(METRIC[task], yte.to_numpy(), pred, classes)
    return dict(found)


def run_all(
    names: list[str],
    budget: float,
    seconds: float,
    on_dataset: Callable[[dict[str, Any]], None] | None = None,
    autogluon: Path | None = None,
    done: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from pydantic import SecretStr

    from atlas.serving.v1 import serving_service_pb2 as pb
    from atlas_core.clients.serving import ServingClient
    from atlas_core.config import S3Settings
    from atlas_core.launcher import SeaweedS3Server
    from atlas_core.rpc import ClientSettings
    from atlas_core.storage import open_artifact_store

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-serving-automl-"))
    weed = SeaweedS3Server(
        tmp / "weed",
        access_key="bench",
        secret_key="bench-secret-key",
        port=0,
        log_dir=tmp / "weed-logs",
    )
    weed.start(timeout=60)
    procs: list[subprocess.Popen] = []
    out: dict[str, Any] = {
        "budget_s": budget,
        "seconds_per_point": seconds,
        "datasets": dict(done or {}),
    }
    try:
        s3 = S3Settings(
            endpoint=weed.endpoint,
            access_key=SecretStr("bench"),
            secret_key=SecretStr("bench-secret-key"),
            bucket="bench",
        )
        store = open_artifact_store(s3)
        replicas: dict[str, tuple[Any, str]] = {}
        signer = _signer(tmp)  # both replicas trust the bench's key
        trusted = json.dumps([str(tmp / "secrets" / "bundle-signing.pub")])
        for kind, compile_models, tolerance in REPLICAS:
            (tmp / kind).mkdir()
            started, target = start_atlas(
                tmp / kind,
                s3,
                env={
                    "ATLAS_SERVING_RUNTIME__COMPILE_MODELS": compile_models,
                    "ATLAS_SERVING_BUNDLES__TRUSTED_KEYS": trusted,
                    **(
                        {"ATLAS_SERVING_RUNTIME__REFIT_FULL_TOLERANCE": tolerance}
                        if tolerance
                        else {}
                    ),
                },
            )
            procs += started
            _wait_serving(target)
            client = ServingClient(
                ClientSettings(target=target, token=SecretStr(TOKEN)), timeout=600.0
            )
            replicas[kind] = (client, target)
        # the throughput reference: the 100-tree XGBoost pipeline on the compiled replica
        client, target = replicas["compiled"]
        xgb = _bundle(store, "models/xgb/v1.tar", signer)
        client.register("xgb", xgb.uri)  # type: ignore[attr-defined]
        variant = pb.Variant(name="live", role=pb.VARIANT_ROLE_LIVE, weight=100)
        variant.model.model_name, variant.model.version = "xgb", 1
        client.create_endpoint(pb.EndpointSpec(name="xgb", variants=[variant]))
        from sklearn.datasets import load_breast_cancer

        bc = load_breast_cancer(as_frame=True).data
        bc.columns = [c.replace(" ", "_") for c in bc.columns]
        xgb_rows = _records(bc.iloc[:256])
        for name in names:
            if name in out["datasets"]:
                continue  # measured by the run this one resumes
            try:
                found = run_dataset(name, budget, seconds, replicas, store, signer, autogluon)
            except Exception as exc:  # noqa: BLE001 - recorded; the other datasets still run
                print(f"{name}: failed: {exc!r}", flush=True)
                out["failed"] = {**out.get("failed", {}), name: repr(exc)}
                continue
            # the reference right after each dataset: the shared machine's load drifts
            found["xgb_c1"] = load(target, "xgb", xgb_rows, 1, seconds)
            found["xgb_c64"] = load(target, "xgb", xgb_rows, 64, seconds)
            c1, c64 = found["xgb_c1"], found["xgb_c64"]
            print(
                f"{'xgb-100':<14} {'compiled':<9} p50 {c1['p50_ms']:7.2f} ms  "
                f"p99 {c1['p99_ms']:7.2f} ms  c64 {c64['rps']:7.0f} req/s",
                flush=True,
            )
            out["datasets"][name] = found
            if on_dataset is not None:  # partial results survive a later failure
                on_dataset(out)
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


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    rows = out["datasets"].values()
    summary: dict[str, Any] = {}
    for kind, _, _ in REPLICAS:
        p99 = [r[kind]["c1"]["p99_ms"] for r in rows]
        summary[kind] = {
            "p99_c1_ms_max": max(p99),
            "p99_c1_ms_median": statistics.median(p99),
            "p50_c1_ms_median": statistics.median(r[kind]["c1"]["p50_ms"] for r in rows),
            "rps_c64_min_vs_xgb": min(r[kind]["c64"]["rps"] / r["xgb_c64"]["rps"] for r in rows),
            "batch_rows_per_s_min": min(r[kind]["batch_rows_per_s"] for r in rows),
            "quality_loss_max": max(r[kind]["quality_loss"] for r in rows),
        }
    default = summary[DEFAULT]
    ag = [r["autogluon"]["p99_ms"] for r in rows if "autogluon" in r]
    extra = {"autogluon_p99_c1_ms_median": statistics.median(ag)} if ag else {}
    return {
        **extra,
        "winner_p99_c1_ms_max": default["p99_c1_ms_max"],
        "winner_p99_c1_ms_median": default["p99_c1_ms_median"],
        "winner_rps_c64_min_vs_xgb": default["rps_c64_min_vs_xgb"],
        "quality_loss_max": default["quality_loss_max"],
        "today_p99_c1_ms_median": summary["today"]["p99_c1_ms_median"],
        "xgb_p99_c1_ms_median": statistics.median(r["xgb_c1"]["p99_ms"] for r in rows),
        "p99_c1_median_ratio_today_over_default": summary["today"]["p99_c1_ms_median"]
        / default["p99_c1_ms_median"],
        "summary": summary,
    }


def _resumed(path: Path, budget: float, seconds: float) -> dict[str, Any]:
    """The datasets an interrupted run measured, each stamped with that run's commit."""
    previous = json.loads(path.read_text())
    if (previous.get("budget_s"), previous.get("seconds_per_point")) != (budget, seconds):
        sys.exit(f"{path} ran at another --budget or --seconds: it cannot be resumed")
    commit = previous.get("run", {}).get("commit", {})
    return {
        name: {**found, "measured_at": found.get("measured_at", commit)}
        for name, found in previous.get("datasets", {}).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="*")
    parser.add_argument("--budget", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--autogluon", type=Path, help="AutoGluon's venv (side by side)")
    parser.add_argument(
        "--resume",
        type=Path,
        help="a serving_automl.json of an interrupted run (same --budget and --seconds): its "
        "datasets are kept, each with the commit it was measured at, the others run",
    )
    args = parser.parse_args()
    names = args.datasets or list(QUICK if args.quick else DATASETS)
    budget = args.budget or (20.0 if args.quick else 120.0)
    seconds = args.seconds or (2.0 if args.quick else 5.0)

    def save(out: dict[str, Any]) -> Path:
        out.update(summarise(out))
        return write_results("serving_automl", out, quick=args.quick)

    done = _resumed(args.resume, budget, seconds) if args.resume else None
    load_before = os.getloadavg()
    out = run_all(names, budget, seconds, on_dataset=save, autogluon=args.autogluon, done=done)
    # a shared machine: the figures are only comparable within one load level
    out["load_average"] = {"start": list(load_before), "end": list(os.getloadavg())}
    path = save(out)
    print(f"wrote {path}")
    keys = (
        "winner_p99_c1_ms_max",
        "winner_p99_c1_ms_median",
        "winner_rps_c64_min_vs_xgb",
        "quality_loss_max",
        "today_p99_c1_ms_median",
        "xgb_p99_c1_ms_median",
        "p99_c1_median_ratio_today_over_default",
    )
    if "autogluon_p99_c1_ms_median" in out:
        keys += ("autogluon_p99_c1_ms_median",)
    print(json.dumps({k: out[k] for k in keys}, indent=2))
    if any(not math.isfinite(out[k]) for k in keys):
        sys.exit(1)


if __name__ == "__main__":
    main()

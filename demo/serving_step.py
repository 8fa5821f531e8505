"""Demo step for the serving service: the bundle the trainer step produced (``shared
["model_bundle"]``; without it, a quick XGBoost on the same data) is registered, deployed,
asked about real held-out patients (inline features and entity ids looked up in the data
service), then a challenger rolls out as a 25% canary under error/latency alarms.

Interface: ``run(state, data_dir, shared)``; reads ``shared["model_bundle"]`` (an
``atlas.common.v1.ArtifactRef``), ``shared["train_dataset"]`` and ``shared["test_dataset"]``
(``(dataset_id, version)``) when earlier steps set them; sets ``shared["endpoint"]``.
"""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.bundle_signing import BundleSigner
from atlas_core.clients import DataClient
from atlas_core.clients.serving import ServingClient, variant
from atlas_core.config import S3Settings
from atlas_core.launcher import RunState, ensure_credentials
from atlas_core.rpc import ClientSettings
from atlas_core.storage import ArtifactStore, open_artifact_store

ENDPOINT = "breast-cancer"
MODEL = "breast-cancer"
TARGET = "malignant"


def run(state: RunState, data_dir: Path, shared: dict[str, Any]) -> None:
    creds = ensure_credentials(data_dir)
    address = {p.name: p.address for p in state.processes}
    store = open_artifact_store(
        S3Settings(
            endpoint=state.s3_endpoint,
            access_key=creds.s3_access_key,
            secret_key=creds.s3_secret_key,
        )
    )
    train, test = _frames(store, address.get("data"), creds.admin_token, shared)
    client = ServingClient(ClientSettings(target=address["serving"], token=creds.admin_token))
    signer = BundleSigner.from_file(creds.signing_key_file)  # the suite's key, serving trusts it

    trained = shared.get("model_bundle")
    if trained is not None and trained.uri:
        v1 = client.register(
            MODEL, trained.uri, aliases=["production"], description="AutoML winner (trainer step)"
        )
        origin = "the trainer's AutoML bundle"
    else:
        names = [
            c for c in train.select_dtypes("number").columns if c not in (TARGET, "patient_id")
        ]
        ref = _xgboost(store, signer, "demo/models/breast-cancer/v1.tar", train, names, trees=40)
        v1 = client.register(MODEL, ref.uri, aliases=["production"])
        origin = "a 40-tree XGBoost (no trainer bundle)"
    inputs = [c.name for c in v1.input_schema.columns]
    print(
        f"registered {MODEL} v{v1.ref.version} ({origin}): {len(inputs)} inputs, "
        f"{v1.task_type}, lineage {', '.join(_parents(v1))}"
    )

    spec = pb.EndpointSpec(name=ENDPOINT, variants=[variant("blue", MODEL, alias="production")])
    spec.capture.enabled, spec.capture.sample_fraction = True, 1.0
    lookup = "data" in address and "patient_id" in test.columns
    if lookup:
        spec.feature_lookup.feature_groups.add(name="patients")
        spec.feature_lookup.fallback = pb.FALLBACK_POLICY_DEFAULTS
    started = time.perf_counter()
    client.create_endpoint(spec)
    print(
        f"endpoint {ENDPOINT} created in {time.perf_counter() - started:.2f}s (bundle "
        "checksum-verified"
        + (", schema checked against feature group 'patients'" if lookup else "")
        + ")"
    )

    _predict_rows(client, test, inputs)
    if lookup:
        _predict_entities(client, test)

    names = [n for n in inputs if n in train.columns]
    challenger = _xgboost(
        store, signer, "demo/models/breast-cancer/challenger.tar", train, names, trees=80
    )
    v2 = client.register(
        MODEL, challenger.uri, aliases=["candidate"], description="challenger: 80-tree XGBoost"
    )
    _canary(client, test, inputs, v2.ref.version)
    shared["endpoint"] = ENDPOINT
    client.close()


def _frames(
    store: ArtifactStore, data_address: str | None, token: str, shared: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data step's train/test split when present, else the same 75/25 split locally."""
    if data_address and "test_dataset" in shared and "train_dataset" in shared:
        import pyarrow.parquet as pq

        with DataClient(ClientSettings(target=data_address, token=token)) as data:
            frames = []
            for key in ("train_dataset", "test_dataset"):
                ds = data.get_dataset(*shared[key])
                raw = store.get_bytes(store.key_for_uri(ds.artifacts[0].uri))
                frames.append(pq.read_table(io.BytesIO(raw)).to_pandas())
        return frames[0], frames[1]
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.rename(columns=lambda c: re.sub(r"[^a-z0-9]+", "_", c.lower()))
    frame[TARGET] = (bunch.target == 0).astype(int)
    train, test = train_test_split(frame, test_size=0.25, stratify=frame[TARGET], random_state=0)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _xgboost(
    store: ArtifactStore,
    signer: BundleSigner,
    key: str,
    train: pd.DataFrame,
    names: list[str],
    trees: int,
) -> Any:
    from xgboost import XGBClassifier

    from atlas_core.bundles import write_bundle

    X, y = train[names].astype("float64"), train[TARGET].astype(int)
    model = XGBClassifier(n_estimators=trees, max_depth=3, n_jobs=1).fit(X, y)
    return write_bundle(
        store,
        key,
        model=model,
        task="binary",
        target=TARGET,
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={},
        lineage={"dataset": {"name": "breast-cancer-train", "version": 1}},
        signer=signer,  # the suite's key, which serving trusts
    )


def _parents(version: pb.ModelVersion) -> list[str]:
    out = []
    for p in version.lineage.parents:
        kind = p.WhichOneof("ref")
        if kind == "dataset":
            out.append(f"dataset {p.dataset.dataset_id} v{p.dataset.version}")
        elif kind == "trial":
            out.append(f"trial #{p.trial.trial_number} of job {p.trial.job_id[:8]}")
        else:
            out.append(p.role)
    return out or ["-"]


def _row(test: pd.DataFrame, i: int, inputs: list[str]) -> dict[str, Any]:
    record = test.iloc[i]
    return {n: _plain(record[n]) for n in inputs}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _predict_rows(client: ServingClient, test: pd.DataFrame, inputs: list[str]) -> None:
    right, shown = 0, []
    started = time.perf_counter()
    n = min(40, len(test))
    for i in range(n):
        resp = client.predict(ENDPOINT, _row(test, i, inputs), explain=i == 0)
        truth = str(int(test.iloc[i][TARGET]))
        right += resp.prediction.label == truth
        if i == 0:
            top = sorted(resp.prediction.contributions.items(), key=lambda kv: -abs(kv[1]))[:2]
            shown.append(
                ", ".join(f"{k} {v:+.2f}" for k, v in top)
                or "not available for this model (no booster inside)"
            )
    ms = (time.perf_counter() - started) * 1000 / n
    print(
        f"predicted {n} held-out patients by feature values: {right}/{n} correct, "
        f"{ms:.1f} ms per call; first answer's top contributions: {shown[0]}"
    )


def _predict_entities(client: ServingClient, test: pd.DataFrame) -> None:
    ids = [int(x) for x in test["patient_id"].iloc[:5]] + [999_999]
    answers = []
    for pid in ids:
        resp = client.predict(ENDPOINT, entity_id=pid)
        answers.append(
            f"{pid}->{resp.prediction.label}"
            + (" (fallback)" if resp.prediction.fallback_used else "")
        )
    print("predicted by entity id (online features from the data service): " + ", ".join(answers))


def _canary(client: ServingClient, test: pd.DataFrame, inputs: list[str], version: int) -> None:
    policy = pb.TrafficPolicy(canary=pb.CanaryPolicy(canary_percent=25))
    policy.canary.bake_time.FromSeconds(3)
    alarms = pb.AlarmConfig(max_error_rate=0.02, min_requests=20)
    alarms.max_p99_latency.FromMilliseconds(250)
    alarms.window.FromSeconds(10)
    seen: dict[str, int] = {}
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            resp = client.predict(ENDPOINT, _row(test, i % len(test), inputs))
            seen[resp.variant] = seen.get(resp.variant, 0) + 1
            i += 1

    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    time.sleep(0.5)
    dep = client.deploy(
        ENDPOINT, [variant("green", MODEL, version=version)], policy=policy, alarms=alarms
    )
    final = client.wait_deployment(dep.deployment_id, timeout=60)
    time.sleep(0.5)
    stop.set()
    load.join()
    state = pb.DeploymentState.Name(final.state).removeprefix("DEPLOYMENT_STATE_").lower()
    print(
        f"canary of v{version} (25% for 3s, alarms: errors > 2%, p99 > 250 ms): {state}; "
        f"traffic during rollout: " + ", ".join(f"{k} {n}" for k, n in sorted(seen.items()))
    )
    for s in client.stats(ENDPOINT, 30):
        print(
            f"  variant {s.variant:<5} v{s.model_version}: {s.qps:6.1f} req/s, p50 "
            f"{s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} ms, errors {s.error_rate:.1%}"
        )

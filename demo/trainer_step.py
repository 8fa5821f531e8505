"""Demo step for the trainer: AutoML on the dataset the data step built (the training split
of the breast cancer data), then the model bundle is scored on the held-out split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

from atlas.common.v1 import common_pb2
from atlas_core.bundles import BundleTrust, load_bundle
from atlas_core.cli._trainer import follow
from atlas_core.clients import DataClient, TrainerClient, automl_spec
from atlas_core.config import S3Settings
from atlas_core.launcher import RunState, ensure_credentials
from atlas_core.rpc import ClientSettings
from atlas_core.storage import open_artifact_store

BUDGET_S = 40


def run(state: RunState, data_dir: Path, shared: dict[str, Any]) -> None:
    creds = ensure_credentials(data_dir)
    address = {p.name: p.address for p in state.processes}
    trainer = TrainerClient(ClientSettings(target=address["trainer"], token=creds.admin_token))
    train_ref = shared.get("train_dataset", ("breast-cancer-train", 0))
    spec = automl_spec(target="malignant", dataset=train_ref, wall_seconds=BUDGET_S, seed=0)
    spec.ignore_columns.extend(["patient_id", "label_time"])
    job = trainer.submit(spec)
    print(
        f"AutoML job {job.status.job_id[:8]} on {train_ref[0]} ({BUDGET_S}s budget, "
        "Hyperband-seeded TPE over the whole pipeline):"
    )
    started = time.perf_counter()
    lines: list[str] = []

    class _Tail:
        def write(self, text: str) -> None:
            if text.strip():
                lines.append(text.rstrip())

        def flush(self) -> None:
            pass

    follow(trainer, job.status.job_id, out=_Tail())
    for line in [ln for ln in lines if ln.startswith("trial")][-4:]:
        print("  " + line)
    done = trainer.get(job.status.job_id)
    if done.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"training failed: {done.status.error.message}")
    r = done.result
    print(
        f"finished in {time.perf_counter() - started:.0f}s: {r.trials_complete} trials "
        f"complete, {r.trials_pruned} pruned, {r.trials_failed} failed, "
        f"{r.trials_interrupted} interrupted; best CV {r.metric} "
        f"{r.best.score:.4f} ({r.best.pipeline[:70]})"
    )
    board = trainer.leaderboard(job.status.job_id, limit=3)
    for rank, t in enumerate(board.entries, 1):
        print(f"  #{rank} {t.score:.4f}  {t.pipeline[:80]}")
    report = trainer.report(job.status.job_id)
    top = ", ".join(f.feature for f in report.feature_importance[:3])
    print(f"  most important features ({report.importance_method}): {top}")

    store = open_artifact_store(
        S3Settings(
            endpoint=state.s3_endpoint,
            access_key=creds.s3_access_key,
            secret_key=creds.s3_secret_key,
        )
    )
    trust = BundleTrust.from_files([creds.signing_public_key_file])  # as serving trusts it
    bundle = load_bundle(store, store.key_for_uri(r.model_bundle.uri), trust=trust)
    with DataClient(ClientSettings(target=address["data"], token=creds.admin_token)) as data:
        test = data.get_dataset(*shared.get("test_dataset", ("breast-cancer-test", 0)))
    frame = pq.read_table(_download(store, test.artifacts[0].uri)).to_pandas()
    proba = bundle.predictor.predict_proba(frame)[:, 1]
    auc = roc_auc_score(frame["malignant"], proba)
    print(
        f"model bundle {r.model_bundle.size_bytes / 1e6:.1f} MB, sha256 "
        f"{r.model_bundle.sha256[:12]}…; held-out test ROC AUC {auc:.4f} on {len(frame)} rows"
    )
    shared["model_bundle"] = r.model_bundle
    shared["training_job"] = job.status.job_id
    trainer.close()


def _download(store, uri: str):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(store.get_bytes(store.key_for_uri(uri)))

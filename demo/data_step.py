"""Demo step for the data service: a real table (scikit-learn's breast cancer data) becomes a
feature group, is served online, and is matched point-in-time into a versioned dataset."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_breast_cancer

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.clients import DataClient
from atlas_core.config import S3Settings
from atlas_core.launcher import RunState, ensure_credentials
from atlas_core.rpc import ClientSettings
from atlas_core.storage import open_artifact_store

T0_US = 1_700_000_000_000_000  # features observed from here on; labels one day later


def _feature_name(raw: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")


def run(state: RunState, data_dir: Path, shared: dict[str, Any]) -> None:
    creds = ensure_credentials(data_dir)
    data = next(p for p in state.processes if p.name == "data")
    # Online reads go to the native online reader when the suite runs one (`make native`).
    client = DataClient(
        ClientSettings(
            target=data.address, token=creds.admin_token, read_target=data.read_address or None
        )
    )
    bunch = load_breast_cancer()
    names = [_feature_name(n) for n in bunch.feature_names]
    x = bunch.data.astype("<f4")
    n = len(x)

    client.create_feature_group(
        pb.FeatureGroupSpec(
            name="patients",
            entity_key="patient_id",
            entity_key_type=pb.ENTITY_KEY_TYPE_INT64,
            event_time_column="observed_at",
            features=[pb.FeatureSpec(name=f, dtype=pb.FEATURE_TYPE_FLOAT32) for f in names],
            description="scikit-learn breast cancer measurements, one patient per row",
        )
    )
    print(f"created feature group 'patients' ({len(names)} float32 features)")

    started = time.perf_counter()
    records = [
        pb.FeatureRecord(
            entity_key=pb.EntityKey(int64_key=i),
            event_time=_ts(T0_US + i * 1_000_000),
            float32_values=x[i].tobytes(),
        )
        for i in range(n)
    ]
    resp = client.put_records("patients", records, batch_size=200)
    print(
        f"ingested {resp.records_written} records over gRPC in "
        f"{time.perf_counter() - started:.2f}s (online LMDB + offline Parquet)"
    )

    t = time.perf_counter()
    got = client.get_features("patients", [0, 1, 10_000], ["mean_radius", "worst_area"])
    ms = (time.perf_counter() - t) * 1000
    server = f"native reader {data.read_address}" if data.read_address else "data service"
    print(
        f"online read of 3 patients x 2 features in {ms:.1f} ms ({server}): "
        f"found={got.found.tolist()} "
        f"mean_radius={[round(float(v), 2) for v in got.column('mean_radius')[:2]]}"
    )

    labels = pa.table(
        {
            "patient_id": np.arange(n, dtype=np.int64),
            "label_time": pa.array(np.full(n, T0_US + 86_400_000_000, dtype=np.int64)).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "malignant": (bunch.target == 0).astype(np.int64),
        }
    )
    store = open_artifact_store(
        S3Settings(
            endpoint=state.s3_endpoint,
            access_key=creds.s3_access_key,
            secret_key=creds.s3_secret_key,
        )
    )
    buf = io.BytesIO()
    pq.write_table(labels, buf)
    ref = store.put_bytes("uploads/breast-cancer-labels.parquet", buf.getvalue())
    job = client.submit_match_samples(
        pb.MatchSamplesSpec(
            sample_source=pb.SampleSource(
                artifact=common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256),
                entity_column="patient_id",
                timestamp_column="label_time",
                label_column="malignant",
            ),
            features=[
                pb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name="patients"))
            ],
            output_dataset_name="breast-cancer",
        )
    )
    done = _follow(client, job.status.job_id, "point-in-time match")
    ds = done.dataset_result.datasets[0]
    counts = {c.label: c.count for c in ds.label_distribution.counts}
    mf = ds.meta_features
    print(
        f"dataset {ds.ref.dataset_id} v{ds.ref.version}: {ds.row_count} rows x "
        f"{len(ds.schema.columns)} columns, labels {counts}"
    )
    print(
        f"  meta-features: class entropy {mf.class_entropy:.3f}, missing "
        f"{mf.missing_ratio:.1%}, skew mean {mf.skew_mean:.2f}; landmarkers "
        + ", ".join(f"{lm.name}={lm.score:.3f}" for lm in mf.landmarkers)
    )

    split = client.submit_derive(
        pb.DeriveDatasetSpec(
            split=pb.SplitOp(
                input=ds.ref,
                train_fraction=0.75,
                test_fraction=0.25,
                stratify_column="malignant",
                seed=0,
            ),
            output_dataset_name="breast-cancer",
        )
    )
    done = _follow(client, split.status.job_id, "stratified 75/25 split")
    for part in done.dataset_result.datasets:
        role = part.ref.dataset_id.rsplit("-", 1)[-1]
        shared[f"{role}_dataset"] = (part.ref.dataset_id, part.ref.version)
        parent = part.lineage.parents[0].dataset
        print(
            f"  {part.ref.dataset_id} v{part.ref.version}: {part.row_count} rows "
            f"(parent {parent.dataset_id} v{parent.version})"
        )
    client.close()


def _follow(client: DataClient, job_id: str, what: str) -> pb.DataJob:
    started = time.perf_counter()
    job = client.wait_job(job_id, timeout=300)
    state = common_pb2.JobState.Name(job.status.state)
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"{what} job {job_id} ended {state}: {job.status.error.message}")
    print(f"{what} job {job_id[:8]} {state} in {time.perf_counter() - started:.1f}s")
    return job


def _ts(us: int):  # type: ignore[no-untyped-def]
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts

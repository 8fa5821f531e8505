"""Point-in-time sample matching, derivation and batch jobs through the real service."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.meta_features import META_FEATURES_VERSION

from .test_feature_store import DIMS, put, record, spec

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


async def wait_job(stub, job_id: str, timeout: float = 120) -> pb.DataJob:
    async def follow():
        async for resp in stub.WatchDataJob(pb.WatchDataJobRequest(job_id=job_id)):
            if resp.job.status.state in TERMINAL:
                return resp.job

    return await asyncio.wait_for(follow(), timeout)


def upload_parquet(harness, key: str, table: pa.Table) -> common_pb2.ArtifactRef:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = harness.service.rt.artifacts.put_bytes(key, buf.getvalue())
    return common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)


async def seed(harness):
    stub = harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    # entity k has records at t=100 (vector k) and t=200 (vector k+1000)
    await put(stub, [record(k, 100.0, np.full(DIMS, k, "<f4"), clicks=k) for k in range(20)])
    await put(
        stub, [record(k, 200.0, np.full(DIMS, k + 1000, "<f4"), clicks=k + 1000) for k in range(20)]
    )
    await asyncio.to_thread(harness.service.flush_offline)


async def test_match_samples_point_in_time(data_harness):
    await seed(data_harness)
    stub = data_harness.stub
    samples = pa.table(
        {
            "user_id": [1, 1, 2, 3, 999],
            "when": pa.array(
                [150_000_000, 250_000_000, 50_000_000, 200_000_000, 300_000_000], pa.int64()
            ).cast(pa.timestamp("us", tz="UTC")),
            "label": [0, 1, 0, 1, 1],
        }
    )
    artifact = upload_parquet(data_harness, "uploads/samples.parquet", samples)
    spec = pb.MatchSamplesSpec(
        sample_source=pb.SampleSource(
            artifact=artifact,
            entity_column="user_id",
            timestamp_column="when",
            label_column="label",
        ),
        features=[
            pb.FeatureSelection(
                feature_group=common_pb2.FeatureGroupRef(name="users"),
                feature_names=["clicks", "emb"],
                column_prefix="u_",
            )
        ],
        output_dataset_name="clicks-train",
    )
    job = (await stub.SubmitMatchSamplesJob(pb.SubmitMatchSamplesJobRequest(spec=spec))).job
    done = await wait_job(stub, job.status.job_id)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    ds = done.dataset_result.datasets[0]
    assert ds.ref.dataset_id == "clicks-train" and ds.ref.version == 1
    assert ds.row_count == 5 and ds.label_column == "label"
    assert {p.feature_group.name for p in ds.lineage.parents if p.HasField("feature_group")} == {
        "users"
    }
    assert ds.meta_features.rows == 5 and ds.meta_features.classes == 2
    # The shared definition's version travels with them (the trainer compares only equals).
    assert ds.meta_features.extra["meta_features_version"] == META_FEATURES_VERSION
    data = data_harness.service.rt.artifacts.get_bytes(ds.artifacts[0].uri.split("/", 3)[-1])
    table = pq.read_table(io.BytesIO(data))
    clicks = table.column("u_clicks").to_pylist()
    # as-of: 150 -> t100 record, 250 -> t200, before any record -> null, equal time -> that one
    assert clicks == [1, 1001, None, 1003, None]
    emb = table.column("u_emb").to_pylist()
    assert emb[0][0] == 1.0 and np.isnan(emb[2]).all()  # unmatched vector -> NaN


async def test_match_job_with_bad_samples_fails_cleanly(data_harness):
    await seed(data_harness)
    stub = data_harness.stub
    no_time = upload_parquet(
        data_harness, "uploads/no_time.parquet", pa.table({"user_id": [1], "label": [1]})
    )
    corrupt = data_harness.service.rt.artifacts.put_bytes(
        "uploads/corrupt.parquet", b"PAR1 this is not parquet"
    )
    corrupt_ref = common_pb2.ArtifactRef(uri=corrupt.uri, sha256=corrupt.sha256)
    for artifact, text in ((no_time, "timestamp"), (corrupt_ref, "Parquet")):
        job = (
            await stub.SubmitMatchSamplesJob(
                pb.SubmitMatchSamplesJobRequest(
                    spec=pb.MatchSamplesSpec(
                        sample_source=pb.SampleSource(
                            artifact=artifact, entity_column="user_id", timestamp_column="timestamp"
                        ),
                        features=[
                            pb.FeatureSelection(
                                feature_group=common_pb2.FeatureGroupRef(name="users")
                            )
                        ],
                        output_dataset_name="never",
                    )
                )
            )
        ).job
        done = await wait_job(stub, job.status.job_id)
        assert done.status.state == common_pb2.JOB_STATE_FAILED
        assert done.status.error.code == "INVALID_ARGUMENT", done.status.error
        assert text in done.status.error.message
    listed = await stub.ListDatasets(pb.ListDatasetsRequest(name_prefix="never"))
    assert len(listed.datasets) == 0  # no partial dataset published


async def test_spine_free_and_derivations_record_lineage(data_harness):
    await seed(data_harness)
    stub = data_harness.stub
    users = common_pb2.FeatureGroupRef(name="users")
    job = (
        await stub.SubmitMatchSamplesJob(
            pb.SubmitMatchSamplesJobRequest(
                spec=pb.MatchSamplesSpec(
                    spine_free=pb.SpineFreeSource(
                        feature_group=users,
                        start_time=ts_pb(0),
                        end_time=ts_pb(300),
                        sampling=pb.SPINE_SAMPLING_EVERY_RECORD,
                        label_feature="clicks",
                    ),
                    features=[
                        pb.FeatureSelection(
                            feature_group=users, feature_names=["emb"], column_prefix="f_"
                        )
                    ],
                    output_dataset_name="history-samples",
                )
            )
        )
    ).job
    done = await wait_job(stub, job.status.job_id)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    base = done.dataset_result.datasets[0]
    assert base.row_count == 40  # every record of 20 entities x 2 snapshots

    async def derive(spec):
        job = (await stub.SubmitDeriveDatasetJob(pb.SubmitDeriveDatasetJobRequest(spec=spec))).job
        finished = await wait_job(stub, job.status.job_id)
        assert finished.status.state == common_pb2.JOB_STATE_SUCCEEDED, (
            finished.status.error.message
        )
        return finished.dataset_result.datasets

    (filtered,) = await derive(
        pb.DeriveDatasetSpec(
            filter=pb.FilterOp(input=base.ref, expression="user_id < 5"),
            output_dataset_name="small",
        )
    )
    assert filtered.row_count == 10
    (sampled,) = await derive(
        pb.DeriveDatasetSpec(
            sample=pb.SampleOp(input=base.ref, fraction=0.5, seed=1), output_dataset_name="half"
        )
    )
    assert sampled.row_count == 20
    (merged,) = await derive(
        pb.DeriveDatasetSpec(
            merge=pb.MergeOp(inputs=[filtered.ref, sampled.ref]), output_dataset_name="both"
        )
    )
    assert merged.row_count == 30
    assert {p.dataset.dataset_id for p in merged.lineage.parents} == {"small", "half"}
    (projected,) = await derive(
        pb.DeriveDatasetSpec(
            project=pb.ProjectOp(input=merged.ref, drop_columns=["f_emb"]),
            output_dataset_name="slim",
        )
    )
    assert "f_emb" not in [c.name for c in projected.schema.columns]
    children = await stub.ListDatasets(pb.ListDatasetsRequest(parent=base.ref))
    assert {d.ref.dataset_id for d in children.datasets} == {"small", "half"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitDeriveDatasetJob(
            pb.SubmitDeriveDatasetJobRequest(
                spec=pb.DeriveDatasetSpec(
                    filter=pb.FilterOp(
                        input=common_pb2.DatasetRef(dataset_id="nope"), expression="1"
                    )
                )
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.value.details()


def ts_pb(seconds: float):
    from google.protobuf import timestamp_pb2

    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(int(seconds * 1e6))
    return t


async def test_meta_features_of_an_older_definition_are_recomputed(data_harness):
    stub = data_harness.stub
    rng = np.random.default_rng(0)
    table = pa.table({"x": rng.normal(size=200), "label": pa.array(np.tile([0, 1], 100))})
    artifact = upload_parquet(data_harness, "uploads/versioned.parquet", table)
    ds = (
        await stub.RegisterDataset(
            pb.RegisterDatasetRequest(name="versioned", artifacts=[artifact], label_column="label")
        )
    ).dataset
    assert ds.meta_features.extra["meta_features_version"] == META_FEATURES_VERSION
    # A record written before the definition was shared carries no version (version 1).
    catalog = data_harness.service.rt.datasets
    record = await asyncio.to_thread(catalog.get, ds.ref.dataset_id, ds.ref.version)
    await asyncio.to_thread(
        catalog.update_meta_features,
        record,
        {"rows": 1, "columns": 1, "target_column": "label", "landmarkers": []},
    )
    stale = await stub.GetDataset(pb.GetDatasetRequest(ref=ds.ref))
    assert stale.dataset.meta_features.extra["meta_features_version"] == 1
    fresh = await stub.GetDatasetMetaFeatures(pb.GetDatasetMetaFeaturesRequest(ref=ds.ref))
    assert fresh.meta_features.extra["meta_features_version"] == META_FEATURES_VERSION
    assert fresh.meta_features.rows == 200 and fresh.meta_features.classes == 2

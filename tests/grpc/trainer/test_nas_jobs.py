"""A one-shot NAS job over gRPC on sklearn's digits: submitted, watched epoch by epoch
(supernet, then fine-tuning), its Pareto front on the leaderboard and in the result, the best
sub-network within the MAC limit bundled and served by a real serving service with the
predictions of the bundle loaded locally."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from atlas.serving.v1 import serving_service_pb2 as spb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from atlas_core.config import S3Settings
from atlas_core.storage import ArtifactRef
from tests.grpc.serving.conftest import live, serving_settings, start_harness, stop_harness
from tests.support.signing import TEST_TRUST

from .test_deep_learning_jobs import _row, deep_spec, digits, run_job

pytestmark = pytest.mark.slow
MAX_MACS = 150_000


async def test_nas_job_searches_within_the_limit_and_its_bundle_is_served(
    trainer_harness, tmp_path: Path, s3_settings: S3Settings
) -> None:
    h = trainer_harness
    images = digits()
    ref = await asyncio.to_thread(h.upload, "uploads/digits.parquet", images)
    spec = deep_spec(ref, "target", "cnn", epochs=4, batch_size=64, params={"lr": 0.003})
    spec.deep_learning.nas.CopyFrom(
        pb.NasSpec(
            max_layers=3,
            widths=[8, 16, 24],
            kernel_sizes=[3, 5],
            activations=["relu", "gelu"],
            max_macs=MAX_MACS,
            population=12,
            generations=5,
            fine_tune_epochs=1,
        )
    )
    job, events = await run_job(h, spec)
    epochs = [e for e in events if e.event_type == pb.TRAINING_EVENT_TYPE_EPOCH_FINISHED]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5]  # 4 supernet epochs, 1 fine-tuning
    result = job.result
    nas = result.deep_learning.nas
    assert nas.architectures_evaluated >= 12 * 4 and nas.generations == 5
    assert nas.max_macs == MAX_MACS and nas.max_parameters == 0
    assert nas.supernet_time.ToTimedelta().total_seconds() > 0
    assert nas.search_time.ToTimedelta().total_seconds() > 0
    best = nas.best
    assert 0 < best.macs <= MAX_MACS and best.parameters == result.deep_learning.parameters
    assert best.architecture["depth"] >= 1 and best.description.startswith("cnn d=")
    assert nas.supernet_parameters > best.parameters
    assert nas.fine_tuned_accuracy == pytest.approx(result.best.score, abs=1e-6)
    assert result.best.score > 0.8, result.best  # digits
    front = list(nas.pareto_front)
    assert best.description in {c.description for c in front}
    macs = [c.macs for c in front]
    assert macs == sorted(macs) and all(m <= MAX_MACS for m in macs)
    for a in front:  # nothing on the front dominates another member
        assert not any(
            b.accuracy >= a.accuracy and b.macs <= a.macs and b.parameters <= a.parameters
            and (b.accuracy, b.macs, b.parameters) != (a.accuracy, a.macs, a.parameters)
            for b in front
        )  # fmt: skip

    board = await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=job.status.job_id))
    rows = list(board.entries)
    assert rows[0].origin == "nas" and rows[0].bundle.uri == result.model_bundle.uri
    assert rows[0].pipeline.startswith("nas cnn d=") and rows[0].metrics["macs"] == best.macs
    pareto = rows[1:]
    assert len(pareto) == len(front) and all(r.origin == "nas_pareto_front" for r in pareto)
    assert {(r.metrics["macs"], r.metrics["parameters"]) for r in pareto} == {
        (c.macs, c.parameters) for c in front
    }
    report = (
        await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=job.status.job_id))
    ).report
    assert [p.name for p in report.plots] == ["loss_curve"]

    store = h.service.rt.artifacts
    b = result.model_bundle
    loaded = load_bundle(store, store.key_for_uri(b.uri), trust=TEST_TRUST)
    assert loaded.manifest["model"]["class"] == "atlas_core.ml._torch_net.TorchNetModel"
    pixels = images.drop(columns="target").iloc[:60]
    local = loaded.predictor.predict(pixels)
    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        await serving.register(
            "nas-digits", ArtifactRef(uri=b.uri, key="", sha256=b.sha256, size=b.size_bytes)
        )
        await serving.stub.CreateEndpoint(
            spb.CreateEndpointRequest(
                spec=spb.EndpointSpec(name="nas-digits", variants=[live("blue", "nas-digits", 1)])
            )
        )
        batch = await serving.stub.PredictBatch(
            spb.PredictBatchRequest(
                endpoint_name="nas-digits", rows=[_row(r) for r in pixels.to_dict("records")]
            )
        )
        served = np.array([int(p.label) for p in batch.predictions])
        np.testing.assert_array_equal(served, local)
        assert (served == images.target.iloc[:60].to_numpy()).mean() > 0.8
    finally:
        await stop_harness(serving)

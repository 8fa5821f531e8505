"""Ground truth attached to served predictions (by id, by entity and time, in batches and as a
stream, idempotent), model quality checked against scikit-learn, quality metrics and alerts,
on a real server with SQLite and PostgreSQL metadata and SeaweedFS."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings
from atlas_core.storage import open_artifact_store
from tests.support.signing import TEST_SIGNER

from .conftest import (
    ServingHarness,
    breast_cancer,
    live,
    row,
    serving_settings,
    start_harness,
    stop_harness,
    write_model,
)

G = pb.GroundTruthStatus


def quality_config(**kw: Any) -> pb.QualityConfig:
    return pb.QualityConfig(enabled=True, **kw)


async def create(
    h: ServingHarness, name: str = "bc", quality: pb.QualityConfig | None = None, version: int = 1
) -> None:
    spec = pb.EndpointSpec(name=name, variants=[live("blue", "bc", version)])
    if quality is not None:
        spec.quality.CopyFrom(quality)
    await h.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))


async def predict_rows(
    h: ServingHarness, X: pd.DataFrame, n: int, endpoint: str = "bc"
) -> list[pb.PredictResponse]:
    out = []
    for record in X.iloc[:n].to_dict("records"):
        out.append(await h.stub.Predict(pb.PredictRequest(endpoint_name=endpoint, row=row(record))))
    return out


def by_id(prediction_id: str, outcome: Any, row_index: int = 0) -> pb.GroundTruth:
    return pb.GroundTruth(
        prediction=pb.PredictionTarget(prediction_id=prediction_id, row=row_index),
        outcome=value(outcome),
    )


def value(v: Any) -> common_pb2.Value:
    if isinstance(v, bool):
        return common_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return common_pb2.Value(int64_value=v)
    if isinstance(v, float):
        return common_pb2.Value(double_value=v)
    return common_pb2.Value(string_value=str(v))


async def attach(
    h: ServingHarness, items: list[pb.GroundTruth], request_id: str = "", endpoint: str = "bc"
) -> pb.AttachGroundTruthResponse:
    return await h.stub.AttachGroundTruth(
        pb.AttachGroundTruthRequest(endpoint_name=endpoint, items=items, request_id=request_id)
    )


async def quality(h: ServingHarness, endpoint: str = "bc", **kw: Any) -> pb.GetModelQualityResponse:
    return await h.stub.GetModelQuality(pb.GetModelQualityRequest(endpoint_name=endpoint, **kw))


def metric(vq: pb.VariantQuality, name: str) -> pb.MetricEstimate:
    found = [m for m in vq.metrics if m.metric == name]
    assert found, f"{name} missing from {[m.metric for m in vq.metrics]}"
    return found[0]


async def test_attach_by_id_is_idempotent_and_latest_wins(
    tmp_path: Path, s3_settings: S3Settings, db_url: str
) -> None:
    h = await start_harness(serving_settings(tmp_path, s3_settings, db_url))
    try:
        X, y = breast_cancer()
        await h.register("bc", write_model(s3_settings, "models/bc/v1.tar"))
        await create(h, quality=quality_config())
        answers = await predict_rows(h, X, 30)
        items = [by_id(a.prediction_id, int(y.iloc[i])) for i, a in enumerate(answers)]

        first = await attach(h, items, request_id="gt-1")
        assert (first.accepted, first.duplicates, first.rejected) == (30, 0, 0)
        assert all(
            r.status == G.GROUND_TRUTH_STATUS_ACCEPTED and r.version == 1 for r in first.results
        )
        # a retry of the same call returns its first results and counts nothing again
        again = await attach(h, items, request_id="gt-1")
        assert again == first
        # the same outcomes under another request id change nothing
        dup = await attach(h, items, request_id="gt-2")
        assert (dup.accepted, dup.duplicates) == (0, 30)
        # another outcome for one prediction replaces it: latest wins, version 2
        flipped = 1 - int(y.iloc[0])
        changed = await attach(h, [by_id(answers[0].prediction_id, flipped)], request_id="gt-3")
        assert changed.results[0].status == G.GROUND_TRUTH_STATUS_UPDATED
        assert changed.results[0].version == 2

        report = await quality(h)
        (vq,) = report.variants
        assert (vq.variant, vq.model_version, vq.labeled) == ("blue", 1, 30)
        truth = y.iloc[:30].astype(int).to_numpy().copy()
        truth[0] = flipped
        predicted = np.array([int(a.prediction.label) for a in answers])
        assert metric(vq, "accuracy").value == pytest.approx(skm.accuracy_score(truth, predicted))
    finally:
        await stop_harness(h)


async def test_bad_items_get_their_own_status_and_count_nothing(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    h = serving
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    await create(h, quality=quality_config())
    await create(h, name="other", quality=quality_config())
    await create(h, name="plain")  # quality disabled
    (answer,) = await predict_rows(h, features, 1)
    other = (
        await h.stub.Predict(
            pb.PredictRequest(endpoint_name="other", row=row(features.iloc[0].to_dict()))
        )
    ).prediction_id
    now_ms = int(time.time() * 1000)
    unknown = f"{now_ms - 60_000:012x}{os.urandom(10).hex()}"  # a minute old: indexed if real
    fresh = f"{now_ms:012x}{os.urandom(10).hex()}"
    expired = f"{now_ms - 40 * 86400 * 1000:012x}{os.urandom(10).hex()}"
    items = [
        by_id(unknown, 1),
        by_id("not-an-id", 1),
        by_id(expired, 1),
        by_id(other, 1),  # a prediction of another endpoint
        by_id(answer.prediction_id, 7),  # not a class
        by_id(answer.prediction_id, 0.5),  # not a label
        by_id(answer.prediction_id, 1, row_index=3),  # no such row
        pb.GroundTruth(prediction=pb.PredictionTarget(prediction_id=answer.prediction_id)),
        pb.GroundTruth(outcome=value(1)),
        pb.GroundTruth(entity=pb.EntityTarget(entity_id=value(12345)), outcome=value(1)),
        by_id(fresh, 1),  # may still be buffered by another replica: retry later
        by_id(answer.prediction_id, "1"),  # the only good one
    ]
    resp = await attach(h, items)
    reasons = [r.error.reason for r in resp.results]
    assert reasons == [
        "PREDICTION_NOT_FOUND",
        "PREDICTION_NOT_FOUND",
        "PREDICTION_EXPIRED",
        "PREDICTION_NOT_FOUND",
        "UNKNOWN_CLASS",
        "WRONG_OUTCOME_TYPE",
        "PREDICTION_NOT_FOUND",
        "OUTCOME_REQUIRED",
        "TARGET_REQUIRED",
        "NO_MATCHING_PREDICTIONS",
        "PREDICTION_NOT_INDEXED",
        "",
    ]
    assert [r.error.code for r in resp.results[:3]] == ["NOT_FOUND"] * 3
    assert resp.results[4].error.code == "INVALID_ARGUMENT"
    assert resp.results[10].error.code == "UNAVAILABLE"
    assert (resp.rejected, resp.accepted) == (11, 1)
    assert (await quality(h)).variants[0].labeled == 1

    async def status_of(**request: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await h.stub.AttachGroundTruth(pb.AttachGroundTruthRequest(**request))
        return info.value.code(), dict(info.value.trailing_metadata() or ()).get("reason", "") or (
            info.value.details() or ""
        )

    code, _ = await status_of(endpoint_name="bc")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await status_of(endpoint_name="bc", items=[by_id(unknown, 1)] * 1001)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await status_of(endpoint_name="plain", items=[by_id(other, 1)])
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = await status_of(endpoint_name="nope", items=[by_id(other, 1)])
    assert code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await quality(h, metric="rmse")  # not a classification metric
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_attach_by_entity_and_time_and_as_a_stream(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    h = serving
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    await create(h, quality=quality_config(entity_feature="mean_radius"))
    start = int(time.time() * 1e6)
    answers = await predict_rows(h, features, 3)
    batch = await h.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="bc", rows=[row(r) for r in features.iloc[3:8].to_dict("records")]
        )
    )
    entity = float(features.iloc[0]["mean_radius"])
    window = pb.EntityTarget(entity_id=value(entity))
    window.start_time.FromMicroseconds(start)
    window.end_time.FromMicroseconds(int(time.time() * 1e6) + 1)

    async def messages() -> Any:
        yield pb.AttachGroundTruthStreamRequest(
            endpoint_name="bc",
            items=[pb.GroundTruth(entity=window, outcome=value(0))],
            request_id="s-1",
        )
        yield pb.AttachGroundTruthStreamRequest(
            items=[by_id(batch.prediction_id, 1, row_index=i) for i in range(5)]
            + [by_id(answers[1].prediction_id, "9")],
            request_id="s-2",
        )
        yield pb.AttachGroundTruthStreamRequest(items=[by_id(batch.prediction_id, 1, row_index=4)])

    summary = await h.stub.AttachGroundTruthStream(messages())
    assert (summary.accepted, summary.duplicates, summary.rejected) == (6, 1, 1)
    (bad,) = summary.rejected_items
    assert (bad.index, bad.error.reason) == (6, "UNKNOWN_CLASS")
    (vq,) = (await quality(h)).variants
    assert vq.labeled == 6

    # an entity window that ends before the predictions matches none of them
    early = pb.EntityTarget(entity_id=value(entity))
    early.start_time.FromMicroseconds(start - 10_000_000)
    early.end_time.FromMicroseconds(start - 1)
    resp = await attach(h, [pb.GroundTruth(entity=early, outcome=value(1))])
    assert resp.results[0].error.reason == "NO_MATCHING_PREDICTIONS"


async def test_quality_matches_sklearn_with_intervals_metrics_and_alerts(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    from xgboost import XGBClassifier

    settings = serving_settings(tmp_path, s3_settings, "")
    h = await start_harness(settings)
    try:
        X, y = breast_cancer()
        # trained on half the data: the other half is honest, imperfect traffic
        model = XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X.iloc[::2], y.iloc[::2])
        await h.register("bc", write_model(s3_settings, "models/bc/v1.tar", model=model))
        thresholds = [pb.QualityThreshold(metric="accuracy", threshold=0.999)]
        await create(h, quality=quality_config(thresholds=thresholds, min_labeled=10))
        test = X.iloc[1::2].iloc[:200]
        truth = y.iloc[1::2].iloc[:200].astype(int).to_numpy()
        resp = await h.stub.PredictBatch(
            pb.PredictBatchRequest(
                endpoint_name="bc", rows=[row(r) for r in test.to_dict("records")]
            )
        )
        items = [by_id(resp.prediction_id, int(t), row_index=i) for i, t in enumerate(truth)]
        assert (await attach(h, items)).accepted == 200

        (vq,) = (await quality(h)).variants
        probs = model.predict_proba(test)
        assert vq.labeled == 200
        expected = {
            "auc": skm.roc_auc_score(truth, probs[:, 1]),
            "accuracy": skm.accuracy_score(truth, probs.argmax(axis=1)),
            "log_loss": skm.log_loss(truth, probs),
        }
        for name, value_ in expected.items():
            m = metric(vq, name)
            assert m.value == pytest.approx(value_, rel=1e-4), name
            assert m.lower <= m.value <= m.upper and m.upper - m.lower > 0, name
            assert m.upper - m.lower < 0.5, name
            assert m.higher_is_better == (name != "log_loss")
        # deterministic: the same report twice
        assert (await quality(h)).variants[0] == vq

        await asyncio.to_thread(h.service._quality_tick)
        sample = h.service.metrics.registry.get_sample_value
        labels = {"endpoint": "bc", "variant": "blue", "model_version": "1"}
        assert sample("atlas_serving_labeled_predictions", labels) == 200
        assert sample(
            "atlas_serving_model_quality", {**labels, "metric": "auc", "bound": "value"}
        ) == pytest.approx(expected["auc"], rel=1e-4)
        alerts = (await h.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts
        assert [(a.kind, a.feature) for a in alerts] == [(pb.ALERT_KIND_MODEL_QUALITY, "accuracy")]
        await asyncio.to_thread(h.service._quality_tick)  # still open: not raised twice
        assert len((await h.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts) == 1

        stats = await h.stub.GetEndpointStats(pb.GetEndpointStatsRequest(name="bc"))
        assert stats.variants[0].quality.labeled == 200
    finally:
        await stop_harness(h)


async def test_regression_quality_and_outcome_type(serving: ServingHarness) -> None:
    from xgboost import XGBRegressor

    from atlas_core.bundles import write_bundle

    h = serving
    X, _ = breast_cancer()
    target = X.pop("mean_area")
    model = XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(X.iloc[::2], target.iloc[::2])
    ref = write_bundle(
        open_artifact_store(h.settings.s3),
        "models/area/v1.tar",
        model=model,
        task="regression",
        target="mean_area",
        classes=[],
        X_train=X,
        y_train=target,
        metrics={},
        lineage={},
        signer=TEST_SIGNER,
    )
    await h.register("bc", ref)
    await create(h, quality=quality_config())
    test, truth = X.iloc[1::2].iloc[:80], target.iloc[1::2].iloc[:80].to_numpy()
    resp = await h.stub.PredictBatch(
        pb.PredictBatchRequest(endpoint_name="bc", rows=[row(r) for r in test.to_dict("records")])
    )
    items = [by_id(resp.prediction_id, float(t), row_index=i) for i, t in enumerate(truth)]
    items.append(by_id(resp.prediction_id, "large", row_index=0))
    out = await attach(h, items)
    assert (out.accepted, out.rejected) == (80, 1)
    assert out.results[-1].error.reason == "WRONG_OUTCOME_TYPE"
    report = await quality(h)
    assert report.task == "regression"
    (vq,) = report.variants
    predicted = model.predict(test)
    assert metric(vq, "rmse").value == pytest.approx(
        np.sqrt(skm.mean_squared_error(truth, predicted)), rel=1e-4
    )
    assert metric(vq, "mae").value == pytest.approx(
        skm.mean_absolute_error(truth, predicted), rel=1e-4
    )
    assert metric(vq, "mae").lower < metric(vq, "mae").upper


async def test_cli_attaches_ground_truth_and_reads_quality(
    serving: ServingHarness,
    features: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from atlas_core.cli import main

    from .conftest import TOKEN

    h = serving
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    conn = ["--address", h.server.address, "--token", TOKEN]
    code = await asyncio.to_thread(
        main, ["deploy", "create", "bc", "--model", "bc:1", "--quality", *conn]
    )
    assert code == 0
    answers = await predict_rows(h, features, 4)
    _, y = breast_cancer()
    csv_file = tmp_path / "truth.csv"
    csv_file.write_text(
        "prediction_id,row,outcome\n"
        + "".join(f"{a.prediction_id},0,{int(y.iloc[i])}\n" for i, a in enumerate(answers[:3]))
        + f"{answers[3].prediction_id},0,maybe\n"
    )
    capsys.readouterr()
    code = await asyncio.to_thread(
        main, ["predict", "truth", "bc", "--file", str(csv_file), "--request-id", "cli-1", *conn]
    )
    out, err = capsys.readouterr()
    assert code == 1  # one item was rejected
    assert "3 accepted, 0 updated, 0 duplicates, 1 rejected" in out
    assert "item 4: UNKNOWN_CLASS" in err
    jsonl = tmp_path / "truth.jsonl"
    jsonl.write_text(f'{{"prediction_id": "{answers[3].prediction_id}", "outcome": 1}}\n')
    code = await asyncio.to_thread(
        main, ["predict", "truth", "bc", "--file", str(jsonl), "--stream", *conn]
    )
    out, _ = capsys.readouterr()
    assert code == 0 and "1 accepted" in out
    code = await asyncio.to_thread(main, ["deploy", "quality", "bc", *conn])
    out, _ = capsys.readouterr()
    assert code == 0 and "blue v1: quality on 4 labeled: auc" in out
    code = await asyncio.to_thread(main, ["deploy", "status", "bc", *conn])
    out, _ = capsys.readouterr()
    assert code == 0 and "quality on 4 labeled: auc" in out
    # bad input: clear messages, exit 2, no traceback
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    for argv in (
        ["predict", "truth", "bc", "--file", str(tmp_path / "missing.csv")],
        ["predict", "truth", "bc", "--file", str(tmp_path / "bad.jsonl")],
        ["predict", "truth", "bc", "--prediction", answers[0].prediction_id],
        ["deploy", "quality", "bc", "--since", "soon"],
    ):
        code = await asyncio.to_thread(main, [*argv, *conn])
        _, err = capsys.readouterr()
        assert code == 2 and err.startswith("atlas: ") and "Traceback" not in err, argv


async def test_pruned_predictions_and_outcomes_are_gone(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    h = serving
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    await create(h, quality=quality_config())
    answers = await predict_rows(h, features, 2)
    assert (await attach(h, [by_id(a.prediction_id, 1) for a in answers])).accepted == 2
    assert (await quality(h)).variants[0].labeled == 2
    removed = await asyncio.to_thread(h.service.prediction_log.prune, int(time.time() * 1e6) + 1)
    assert removed == 2
    assert not (await quality(h)).variants
    h.service.truth.indexing_delay_s = 0.0  # pruned, not "maybe still buffered"
    resp = await attach(h, [by_id(answers[0].prediction_id, 1)])
    assert resp.results[0].error.reason == "PREDICTION_NOT_FOUND"


async def test_artifact_batch_rows_take_ground_truth_by_their_ids(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    h = serving
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    await create(h, quality=quality_config())
    store = h.service.store
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(features.iloc[:50], preserve_index=False), buf)
    ref = store.put_bytes("uploads/bc.parquet", buf.getvalue())
    resp = await h.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="bc", input_artifact=common_pb2.ArtifactRef(uri=ref.uri)
        )
    )
    out = pq.read_table(
        io.BytesIO(store.get_bytes(store.key_for_uri(resp.output_artifact.uri)))
    ).to_pandas()
    items = [
        by_id(pid, 1, row_index=int(r))
        for pid, r in zip(out["prediction_id"], out["prediction_row"], strict=True)
    ]
    assert (await attach(h, items)).accepted == 50
    assert (await quality(h)).variants[0].labeled == 50

"""Refit-full bundles over gRPC: an AutoML bundle holds the fold-bagged model and, beside it,
each member refit once on all rows; serving answers with the refit-full version when its
estimated quality is within ``runtime.refit_full_tolerance`` of the fold-bagged one's, else
(or with a negative tolerance) with the fold-bagged model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.bundles import write_bundle
from atlas_core.config import S3Settings
from atlas_core.storage import ArtifactRef, open_artifact_store
from tests.support.signing import TEST_SIGNER

from .conftest import (
    ServingHarness,
    breast_cancer,
    live,
    row,
    serving_settings,
    start_harness,
    stop_harness,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture(scope="module")
def versions() -> dict[str, Any]:
    from atlas_trainer.automl import AutoMLRequest, run_automl

    X, y = breast_cancer()
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=4,
            strategy="random",
            families=["random_forest", "linear"],
            folds=3,
            seed=0,
            fixed_params={"rf.n_estimators": 20},
        )
    )
    assert set(result.versions) == {"fold_bag", "refit_full"}
    return dict(result.versions)


def _bundle(s3: S3Settings, key: str, versions: dict[str, Any], refit_score: Any) -> ArtifactRef:
    X, y = breast_cancer()
    bagged, refit = versions["fold_bag"], versions["refit_full"]
    refit_facts = {**refit.facts(True), "score": refit_score(bagged.score)}
    return write_bundle(
        open_artifact_store(s3),
        key,
        model=bagged.model,
        task="binary",
        target="target",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={"roc_auc": bagged.score},
        lineage={},
        signer=TEST_SIGNER,
        variant=bagged.facts(True),
        variants={"refit_full": (refit.model, refit_facts)},
    )


async def _served(h: ServingHarness, name: str, ref: ArtifactRef, rows: pd.DataFrame) -> Any:
    await h.register(name, ref)
    await h.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name=name, variants=[live("a", name, 1)]))
    )
    batch = await h.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name=name,
            rows=[row(r) for r in rows.to_dict("records")],
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    single = await h.stub.Predict(
        pb.PredictRequest(
            endpoint_name=name,
            row=row(rows.iloc[0].to_dict()),
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    got = np.array([[p.scores["0"], p.scores["1"]] for p in batch.predictions])
    assert batch.served_version == single.served_version  # said on every answer
    loaded = h.service.models.peek((name, 1))
    assert loaded is not None and single.served_version.name == loaded.variant
    return got, single.prediction.scores["1"], loaded, single.served_version


def _rows(features: pd.DataFrame) -> pd.DataFrame:
    rows = features.iloc[:60].copy()
    rows.iloc[5, 3] = np.nan  # a missing value on the wire
    return rows


async def test_the_refit_full_version_is_served_within_the_tolerance(
    serving: ServingHarness, features: pd.DataFrame, versions: dict[str, Any]
) -> None:
    rows = _rows(features)
    refit = versions["refit_full"].model.predict_proba(rows)
    bagged = versions["fold_bag"].model.predict_proba(rows)
    assert not np.allclose(refit, bagged, atol=1e-4)  # the two versions are told apart
    s3 = serving.settings.s3
    # equal estimates (every member was refit), and one slightly worse but within 0.5%
    same = _bundle(s3, "models/rf/same.tar", versions, lambda score: score)
    close = _bundle(s3, "models/rf/close.tar", versions, lambda score: score * 0.998)
    for name, ref in (("same", same), ("close", close)):
        got, first, loaded, served = await _served(serving, name, ref, rows)
        np.testing.assert_allclose(got, refit, rtol=1e-5, atol=1e-6)
        assert first == pytest.approx(refit[0, 1], rel=1e-5, abs=1e-6)
        assert loaded is not None and loaded.variant == "refit_full" and loaded.fast
        assert (served.name, served.scoring) == ("refit_full", "compiled")
        assert "within the tolerance 0.005" in served.reason


async def test_a_refit_full_version_estimated_worse_is_not_served(
    serving: ServingHarness, features: pd.DataFrame, versions: dict[str, Any]
) -> None:
    rows = _rows(features)
    ref = _bundle(serving.settings.s3, "models/rf/worse.tar", versions, lambda s: s * 0.99)
    got, first, loaded, served = await _served(serving, "worse", ref, rows)
    bagged = versions["fold_bag"].model.predict_proba(rows)
    np.testing.assert_allclose(got, bagged, rtol=1e-5, atol=1e-6)
    assert first == pytest.approx(bagged[0, 1], rel=1e-5, abs=1e-6)
    assert loaded is not None and loaded.variant == "fold_bag" and loaded.fast
    assert served.name == "fold_bag" and "over the tolerance 0.005" in served.reason


async def test_a_negative_tolerance_always_serves_the_fold_bagged_model(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame, versions: dict[str, Any]
) -> None:
    h = await start_harness(serving_settings(tmp_path, s3_settings, "", refit_full_tolerance=-1.0))
    try:
        rows = _rows(features)
        ref = _bundle(h.settings.s3, "models/rf/off.tar", versions, lambda score: score)
        got, _, loaded, served = await _served(h, "off", ref, rows)
        bagged = versions["fold_bag"].model.predict_proba(rows)
        np.testing.assert_allclose(got, bagged, rtol=1e-5, atol=1e-6)
        assert loaded is not None and loaded.variant == "fold_bag"
        assert "refit_full_tolerance is negative" in served.reason
    finally:
        await stop_harness(h)

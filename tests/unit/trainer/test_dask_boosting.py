"""Gradient boosting on a real Dask LocalCluster (2 worker processes): XGBoost and LightGBM fit
there match single-process fits and come back as ordinary estimators; AutoML trials use it;
an unreachable scheduler is a clear FAILED_PRECONDITION."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from atlas_core.errors import FailedPrecondition
from atlas_trainer.automl import AutoMLRequest, run_automl
from atlas_trainer.automl.evaluate import Interrupted
from atlas_trainer.config import DaskSettings
from atlas_trainer.parallel.dask_boosting import ROUNDS_PER_CHUNK, DaskBoosting
from tests.support.processes import free_port
from tests.unit.trainer._automl_data import breast_cancer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskBoosting]:
    with DaskBoosting(DaskSettings(engine="always", local_workers=2)) as boosting:
        assert boosting.workers == 2
        yield boosting


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(
        3000, 12, n_informative=6, n_classes=3, random_state=0, class_sep=0.8
    )
    return tuple(train_test_split(X, y, test_size=0.3, random_state=0))  # type: ignore[return-value]


@pytest.mark.slow
def test_xgboost_and_lightgbm_on_two_workers_match_single_process(cluster: DaskBoosting) -> None:
    Xtr, Xte, ytr, yte = _data()
    rounds = ROUNDS_PER_CHUNK + 30  # two chunks: the second continues the first's booster
    cases = {
        "xgboost": lambda: xgb.XGBClassifier(
            n_estimators=1, max_depth=4, learning_rate=0.2, tree_method="hist", n_jobs=1
        ),
        "lightgbm": lambda: lgb.LGBMClassifier(
            n_estimators=1, num_leaves=15, learning_rate=0.2, n_jobs=1, verbose=-1
        ),
    }
    for family, make in cases.items():
        before = cluster.fits
        distributed = cluster.grow(make(), family, Xtr, ytr, 0, rounds)
        assert cluster.fits == before + 2
        # an ordinary single-process estimator of the same class: what bundles hold
        assert type(distributed) is type(make())
        local = make().set_params(n_estimators=rounds).fit(Xtr, ytr)
        if family == "xgboost":
            assert distributed.get_booster().num_boosted_rounds() == rounds
        else:
            assert distributed.booster_.num_trees() == rounds * 3  # one tree per class
        acc_dist = float((distributed.predict(Xte) == yte).mean())
        acc_local = float((local.predict(Xte) == yte).mean())
        assert acc_local > 0.7, family  # the task is learnable: the comparison means something
        assert abs(acc_dist - acc_local) <= 0.03, (family, acc_dist, acc_local)
        agree = float((distributed.predict(Xte) == local.predict(Xte)).mean())
        assert agree >= 0.9, (family, agree)
        restored = pickle.loads(pickle.dumps(distributed))
        np.testing.assert_allclose(restored.predict_proba(Xte), distributed.predict_proba(Xte))
        # growing further continues the same booster
        grown = cluster.grow(distributed, family, Xtr, ytr, rounds, rounds + 10)
        if family == "xgboost":
            assert grown.get_booster().num_boosted_rounds() == rounds + 10


@pytest.mark.slow
def test_a_cancel_stops_a_distributed_fit_between_chunks(cluster: DaskBoosting) -> None:
    Xtr, _, ytr, _ = _data()
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise Interrupted("cancelled")

    before = cluster.fits
    with pytest.raises(Interrupted):
        cluster.grow(
            xgb.XGBClassifier(n_jobs=1), "xgboost", Xtr, ytr, 0, 10 * ROUNDS_PER_CHUNK, check
        )
    assert cluster.fits - before == 1  # one chunk ran, then the cancel was seen


def test_unreachable_scheduler_is_a_clear_failed_precondition() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(FailedPrecondition) as caught:
        DaskBoosting(DaskSettings(scheduler_address=address, connect_timeout_seconds=2)).open()
    assert time.monotonic() - t0 < 30
    err = caught.value
    assert err.reason == "DASK_SCHEDULER_UNREACHABLE"
    assert address in str(err) and "ATLAS_TRAINER_DASK__SCHEDULER_ADDRESS" in str(err)


def test_engine_switch_by_rows_and_setting() -> None:
    auto = DaskBoosting(DaskSettings(min_rows=1000))
    assert auto.applies("xgboost", 1000) and auto.applies("lightgbm", 5000)
    assert not auto.applies("xgboost", 999)  # small fits (and row-sample rungs) stay local
    assert not auto.applies("linear", 10**9)  # only boosters have a Dask engine
    assert DaskBoosting(DaskSettings(engine="always")).applies("lightgbm", 10)
    assert not DaskBoosting(DaskSettings(engine="never", min_rows=1)).applies("xgboost", 10**9)


@pytest.mark.slow
def test_automl_trials_fit_boosters_on_dask_and_keep_ordinary_models() -> None:
    X, y = breast_cancer()
    r = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=2,
            families=["xgboost", "lightgbm"],
            strategy="tpe",
            validation="holdout",
            ensemble=False,
            dask=DaskSettings(engine="always", local_workers=2),
        )
    )
    assert r.dask_fits > 0
    assert r.best_score is not None and r.best_score > 0.95
    model = pickle.loads(pickle.dumps(r.model))  # what the bundle stores
    estimators = [m.estimator for m in getattr(model, "members", [model])]
    assert all(type(e).__module__.split(".")[0] in ("xgboost", "lightgbm") for e in estimators)
    assert all(type(e).__name__ in ("XGBClassifier", "LGBMClassifier") for e in estimators)
    assert model.predict_proba(X.head(5)).shape == (5, 2)


@pytest.mark.slow
def test_automl_with_an_unreachable_scheduler_fails_before_any_trial() -> None:
    X, y = breast_cancer()
    address = f"tcp://127.0.0.1:{free_port()}"
    events: list[dict[str, object]] = []
    with pytest.raises(FailedPrecondition) as caught:
        run_automl(
            AutoMLRequest(
                X,
                y,
                max_trials=2,
                families=["xgboost"],
                dask=DaskSettings(
                    scheduler_address=address, min_rows=100, connect_timeout_seconds=2
                ),
                on_event=events.append,
            )
        )
    assert caught.value.reason == "DASK_SCHEDULER_UNREACHABLE" and address in str(caught.value)
    assert not [e for e in events if e["type"] == "trial_started"]
    # below min_rows the same settings never contact the scheduler: the job trains locally
    r = run_automl(
        AutoMLRequest(
            X.head(200),
            y.head(200),
            max_trials=1,
            families=["xgboost"],
            dask=DaskSettings(scheduler_address=address, min_rows=10_000),
        )
    )
    assert r.dask_fits == 0 and r.best_score is not None

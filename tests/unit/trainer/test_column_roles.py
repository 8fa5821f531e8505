"""Column roles: inference on small frames (dates in several formats, text, identifiers,
coordinates, high-cardinality categories), overrides and their bad input, the features the
roles derive, their float-matrix path, and an AutoML run whose final model takes raw rows."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from atlas_core.errors import InvalidArgument
from atlas_core.ml import ColumnRoleFeatures, ColumnRoleModel
from atlas_trainer.automl import AutoMLRequest, run_automl
from atlas_trainer.automl.roles import check_column_roles, fit_column_roles

WORDS = "the quick brown fox jumps over a lazy dog great rally today fake news media".split()


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    when = pd.Timestamp("2021-03-01") + pd.to_timedelta(
        rng.integers(0, 400 * 24 * 60, n), unit="min"
    )
    return pd.DataFrame(
        {
            "iso": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "iso_offset": when.strftime("%Y-%m-%d %H:%M:%S+02:00"),
            "us_date": when.strftime("%m/%d/%Y"),
            "eu_time": when.strftime("%d.%m.%Y %H:%M:%S"),
            "tweet_time": when.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "native": when,
            "text": [" ".join(rng.choice(WORDS, rng.integers(3, 14))) for _ in range(n)],
            "order_ref": [f"R-{i:06d}" for i in rng.permutation(n)],
            "row_id": np.arange(n),
            "pickup_lat": rng.uniform(40.5, 41.0, n),
            "pickup_lon": rng.uniform(-74.1, -73.7, n),
            "city": rng.choice([f"city{i}" for i in range(50)], n),
            "color": rng.choice(["red", "green", "blue"], n),
            "code": rng.choice(["2019", "2020", "2021"], n),  # numbers in strings: not dates
            "x": rng.normal(size=n),
        }
    )


def roles_of(features: ColumnRoleFeatures) -> dict[str, str]:
    return {r.column: r.role for r in features.roles_}


def test_roles_are_inferred_from_values_and_names() -> None:
    features = ColumnRoleFeatures().fit(frame())
    assert roles_of(features) == {
        "iso": "datetime",
        "iso_offset": "datetime",
        "us_date": "datetime",
        "eu_time": "datetime",
        "tweet_time": "datetime",
        "native": "datetime",
        "text": "text",
        "order_ref": "identifier",
        "row_id": "identifier",
        "pickup_lat": "latitude",
        "pickup_lon": "longitude",
        "city": "categorical",
        "color": "categorical",
        "code": "categorical",
        "x": "numeric",
    }
    assert features.date_formats_["us_date"] == "%m/%d/%Y"
    assert features.date_formats_["eu_time"] == "%d.%m.%Y %H:%M:%S"
    assert features.dropped_ == {"order_ref": "id_like", "row_id": "id_like"}
    detail = {r.column: r.detail for r in features.roles_}
    assert "high cardinality" in detail["city"] and "paired with pickup_lon" in detail["pickup_lat"]
    assert not any(r.overridden for r in features.roles_)
    assert features.summary() == "roles(datetime:6,text:1,identifier:2,latlon:1,freq:1)"


def test_features_derived_from_each_role() -> None:
    X = frame()
    features = ColumnRoleFeatures(text_max_features=40).fit(X)
    Z = features.transform(X)
    assert list(Z.columns) == features.feature_names_out_
    by_column = {r.column: r.features for r in features.roles_}
    # calendar and cyclic parts, and the elapsed days since the earliest training date
    assert {"iso.month", "iso.weekday", "iso.hour", "iso.hour_sin", "iso.elapsed_days"} <= set(
        by_column["iso"]
    )
    assert "us_date.hour" not in by_column["us_date"]  # every time at midnight: nothing there
    first = pd.Timestamp(X["iso"].iloc[0])
    assert Z["iso.month"].iloc[0] == first.month and Z["iso.hour"].iloc[0] == pytest.approx(
        first.hour + first.minute / 60
    )
    np.testing.assert_allclose(Z["iso.elapsed_days"], Z["native.elapsed_days"])
    # the +02:00 offset: the same wall-clock times are two hours earlier in UTC
    np.testing.assert_allclose(Z["iso_offset.hour"], (Z["iso.hour"] - 2) % 24)
    tfidf = [f for f in by_column["text"] if ".w:" in f or ".c:" in f]
    assert 0 < len(tfidf) <= 40  # the width cap
    assert {"text.chars", "text.words"} <= set(by_column["text"])
    assert Z["text.words"].iloc[0] == len(X["text"].iloc[0].split())
    assert by_column["order_ref"] == () and by_column["row_id"] == ()
    assert "order_ref" not in Z and "text" not in Z and "iso" not in Z
    counts = X["city"].value_counts(normalize=True)
    assert Z["city.freq"].iloc[0] == pytest.approx(counts[X["city"].iloc[0]])
    assert by_column["color"] == ("color",)  # few categories: left to the encoders
    rot = "pickup_lat+pickup_lon.rot45_x"
    expected = (X["pickup_lat"] + X["pickup_lon"]) * np.sqrt(0.5)
    np.testing.assert_allclose(Z[rot], expected)
    assert {"pickup_lat", "pickup_lon"} <= set(Z.columns)  # kept numeric as well


def test_new_rows_missing_values_and_unseen_categories() -> None:
    X = frame()
    features = ColumnRoleFeatures().fit(X)
    rows = X.head(3).copy()
    rows.loc[0, "iso"] = "not a date"
    rows.loc[1, "text"] = None
    rows.loc[2, "city"] = "atlantis"
    Z = features.transform(rows.drop(columns=["x"]))  # an absent column is missing
    assert np.isnan(Z["iso.month"].iloc[0]) and np.isnan(Z["iso.elapsed_days"].iloc[0])
    assert np.isnan(Z["text.chars"].iloc[1])
    assert Z["city.freq"].iloc[2] == 0.0
    assert Z["x"].isna().all()


def test_overrides_are_taken_as_given() -> None:
    X = frame()
    X["epoch"] = (X["native"] - pd.Timestamp("1970-01-01")).dt.total_seconds()
    features = ColumnRoleFeatures(
        {"code": "numeric", "color": "identifier", "text": "categorical", "epoch": "datetime"}
    ).fit(X)
    got = {r.column: r for r in features.roles_}
    assert got["code"].role == "numeric" and got["code"].overridden
    assert got["color"].features == () and features.dropped_["color"].startswith("identifier")
    assert got["text"].role == "categorical"
    Z = features.transform(X)
    assert Z["code"].dtype == np.float64 and set(Z["code"]) == {2019.0, 2020.0, 2021.0}
    np.testing.assert_allclose(Z["epoch.elapsed_days"], Z["native.elapsed_days"])


def test_unparseable_dates_in_a_datetime_override_are_missing() -> None:
    X = pd.DataFrame(
        {
            "when": ["2024-01-05", "2024-02-11", "soon", None, "2024-03-30", "31/31/2024"] * 10,
            "y": range(60),
        }
    )
    features, warnings = fit_column_roles(X, {"when": "datetime"})
    role = features.roles_[0]
    assert role.role == "datetime" and role.overridden
    assert "33% of the values do not parse: taken as missing" in role.detail
    assert warnings and "when" in warnings[0] and "do not parse" in warnings[0]
    Z = features.transform(X)
    assert Z["when.month"].isna().tolist() == [False, False, True, True, False, True] * 10


def test_bad_overrides_are_refused_naming_them() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_column_roles({"x": "timestamp"}, ["x", "y"])
    assert err.value.reason == "UNKNOWN_ROLE" and "'timestamp'" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        check_column_roles({"missing_col": "text"}, ["x", "y"])
    assert err.value.reason == "UNKNOWN_COLUMN" and "'missing_col'" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        check_column_roles({"label": "text"}, ["x", "label"], target="label")
    assert err.value.reason == "UNKNOWN_COLUMN" and "target" in str(err.value)


def test_every_role_has_a_matrix_path_equal_to_the_frame_path() -> None:
    X = frame()[["pickup_lat", "x", "pickup_lon", "row_id"]]
    features = ColumnRoleFeatures().fit(X)
    found = features.matrix_transform(list(X.columns))
    assert found is not None
    transform, names = found
    assert names == features.feature_names_out_
    M = X.to_numpy(np.float64)
    np.testing.assert_allclose(transform(M), features.transform(X).to_numpy(np.float64))
    assert features.matrix_transform(["x", "pickup_lon"]) is None  # a kept column absent
    # dates in every format, text, categories: serving's object matrix of raw values
    X = frame()
    X.loc[::7, ["iso", "us_date", "tweet_time", "text", "city"]] = None
    X.loc[3::11, "eu_time"] = "not a date"
    features = ColumnRoleFeatures().fit(X)
    found = features.matrix_transform(list(X.columns))
    assert found is not None
    transform, names = found
    M = X.astype(object).where(X.notna(), None).to_numpy(object)
    M[:, list(X.columns).index("native")] = X["native"].tolist()
    got, want = transform(M), features.transform(X)
    assert got.shape == want.shape and names == list(want.columns)
    for i, name in enumerate(names):
        if name in ("city", "color", "code"):  # categories: the model's encoders take them
            assert got[:, i].tolist() == want[name].tolist(), name
        else:
            np.testing.assert_array_equal(got[:, i].astype(float), want[name], err_msg=name)
    dated = [n for n in names if n.split(".")[0] in ("iso", "us_date", "eu_time", "tweet_time")]
    assert len(dated) > 20 and np.isnan(got[::7, names.index("iso.month")].astype(float)).all()


def _signal_frame(n: int = 400, seed: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """The label hides in the hour of an ISO timestamp and in a word of free text."""
    rng = np.random.default_rng(seed)
    when = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h")
    night = np.asarray(when.hour < 6)
    urgent = rng.random(n) < 0.3
    text = [
        " ".join([*rng.choice(WORDS, rng.integers(4, 10)), *(["urgent"] if u else [])])
        for u in urgent
    ]
    label = np.where(night | urgent, "yes", "no")
    flip = rng.random(n) < 0.05
    label[flip] = np.where(label[flip] == "yes", "no", "yes")
    X = pd.DataFrame(
        {
            "created": when.strftime("%Y-%m-%dT%H:%M:%S"),
            "body": text,
            "ticket": [f"T{i:05d}" for i in range(n)],
            "noise": rng.normal(size=n),
        }
    )
    return X, pd.Series(label, name="label")


@pytest.mark.slow
def test_automl_learns_from_dates_and_text_and_takes_raw_rows() -> None:
    X, y = _signal_frame()
    result = run_automl(
        AutoMLRequest(X, y, max_trials=3, families=["lightgbm"], strategy="random", folds=3, seed=0)
    )
    roles = {r.column: r.role for r in result.column_roles}
    assert roles == {
        "created": "datetime",
        "body": "text",
        "ticket": "identifier",
        "noise": "numeric",
    }
    assert result.dropped_columns == {"ticket": "id_like"}
    assert any("dropped column 'ticket': id_like (nearly unique" in w for w in result.warnings)
    assert (
        result.best_score is not None and result.best_score > 0.85
    )  # AUC (about 0.54 without the roles)
    model = result.model
    assert isinstance(model, ColumnRoleModel) and model.description.startswith("roles(")
    complete = [r for r in result.leaderboard if r.state == "COMPLETE" and r.number >= 0]
    assert complete[0].pipeline.startswith("roles(datetime:1,text:1,identifier:1) > ")
    raw = pd.DataFrame(
        {
            "created": ["2022-02-01T03:00:00", "2022-02-01T15:00:00"],
            "body": ["the fox is urgent", "a lazy dog"],
            "ticket": ["T99999", "T99998"],
            "noise": [0.0, 0.0],
        }
    )
    assert model.predict(raw).tolist()[0] == "yes"
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict_proba(raw), model.predict_proba(raw))
    contributions = model.contributions(raw)
    assert contributions is None or any(n.startswith("created.") for n in contributions[1])


def test_an_override_reaches_the_search_and_bad_ones_fail_the_run() -> None:
    X, y = _signal_frame(120)
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=1,
            families=["linear"],
            strategy="random",
            folds=2,
            column_roles={"noise": "identifier", "body": "categorical"},
        )
    )
    roles = {r.column: (r.role, r.overridden) for r in result.column_roles}
    assert roles["noise"] == ("identifier", True) and roles["body"] == ("categorical", True)
    assert "noise" in result.dropped_columns
    with pytest.raises(InvalidArgument, match="'nope'"):
        run_automl(AutoMLRequest(X, y, max_trials=1, column_roles={"nope": "text"}))


def test_plain_tables_are_left_as_they_were() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.choice(["u", "v"], 60)})
    features, _ = fit_column_roles(X, {})
    assert not features.changes_columns
    result = run_automl(
        AutoMLRequest(X, X["a"] > 0, max_trials=1, families=["linear"], strategy="random")
    )
    assert not isinstance(result.model, ColumnRoleModel)


@pytest.mark.slow
def test_measured_row_latency_includes_the_roles_once() -> None:
    from atlas_trainer.automl.engine import _RolesOnly
    from atlas_trainer.automl.latency import row_latency_s

    X, y = _signal_frame(120)
    result = run_automl(
        AutoMLRequest(
            X, y, max_trials=2, families=["linear"], strategy="random", folds=2, ensemble=False
        )
    )  # no wall budget: every kept trial is measured
    features, _ = fit_column_roles(X, {})
    roles_s = row_latency_s(_RolesOnly(features), X)
    measured = [r.row_latency_s for r in result.leaderboard if r.row_latency_s is not None]
    assert measured and all(s >= 0.5 * roles_s for s in measured)


def test_coordinate_pairs_by_name() -> None:
    rng = np.random.default_rng(0)
    n = 80
    X = pd.DataFrame(
        {
            "pickup_lat": rng.uniform(40, 41, n),
            "dropoff_longitude": rng.uniform(-74, -73, n),
            "pickup_lon": rng.uniform(-74, -73, n),
            "dropoff_latitude": rng.uniform(40, 41, n),
            "long_description_len": rng.uniform(0, 50, n),  # "long" is not its last word
            "depot_lat": 40.5,  # constant: no pair, dropped as before
        }
    )
    features = ColumnRoleFeatures().fit(X)
    assert features.pairs_ == [
        ("pickup_lat", "pickup_lon"),
        ("dropoff_latitude", "dropoff_longitude"),
    ]
    assert roles_of(features)["long_description_len"] == "numeric"
    assert roles_of(features)["depot_lat"] == "numeric"

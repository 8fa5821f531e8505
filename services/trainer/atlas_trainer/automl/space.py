"""The one conditional search space over the whole pipeline, and pipeline construction.

Parameter names do not depend on the dataset (ranges are fractions/percentiles, not column
counts), so a configuration found on one dataset can be enqueued on another (meta-learning).
Names are prefixed by their group (``pre.``, ``xgb.``, ...) and sampled only when relevant,
which is what grouped multivariate TPE exploits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from atlas_core.ml import TabularModel, TabularPreprocessor, TorchMLP

FAMILIES = ("xgboost", "lightgbm", "linear", "random_forest", "extra_trees", "mlp")
_NEEDS_SCALING = {"linear", "mlp"}
# LightGBM histogram resolution: 1023 bins keep a many-valued numeric column (a survey
# weight, a price) from being flattened by the default 255.
LGB_MAX_BINS = (63, 255, 1023)
# LightGBM grows trees leaf-wise up to ``num_leaves``: its capacity knob in leaves, not depth.
_LGB_LEAVES = ("lgb.num_leaves", 4, 1024)


@dataclass(frozen=True)
class SpaceOptions:
    """Caller restrictions: model families, optional steps, and fixed parameter values
    (a fixed value is used instead of sampling that name)."""

    families: tuple[str, ...] = FAMILIES
    allow_crosses: bool = True
    allow_selection: bool = True
    fixed: Mapping[str, Any] | None = None


def validate_families(families: Sequence[str] | None) -> tuple[str, ...]:
    from atlas_core.errors import InvalidArgument

    if not families:
        return FAMILIES
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise InvalidArgument(
            f"unknown model families {bad}; choose from {list(FAMILIES)}", reason="BAD_FAMILY"
        )
    return tuple(dict.fromkeys(families))


class _Sampler:
    """Wraps a trial so fixed parameters bypass sampling."""

    def __init__(
        self, trial: optuna.Trial | optuna.trial.FixedTrial, fixed: Mapping[str, Any] | None
    ) -> None:
        self.trial = trial
        self.fixed = dict(fixed or {})
        self.params: dict[str, Any] = {}

    def _take(self, name: str, sample: Any) -> Any:
        value = self.fixed[name] if name in self.fixed else sample()
        self.params[name] = value
        return value

    def cat(self, name: str, choices: Sequence[Any]) -> Any:
        return self._take(name, lambda: self.trial.suggest_categorical(name, list(choices)))

    def int(self, name: str, low: int, high: int, log: bool = False) -> int:
        return self._take(name, lambda: self.trial.suggest_int(name, low, high, log=log))

    def float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self._take(name, lambda: self.trial.suggest_float(name, low, high, log=log))


def sample_config(
    trial: optuna.Trial | optuna.trial.FixedTrial, task: str, options: SpaceOptions
) -> dict[str, Any]:
    """Sample one full pipeline configuration (flat dict of every parameter it uses)."""
    s = _Sampler(trial, options.fixed)
    family = (
        s.cat("family", options.families)
        if len(options.families) > 1
        else s._take("family", lambda: options.families[0])
    )
    s.cat("pre.imputation", ["median", "mean", "most_frequent"])
    s.cat("pre.missing_ind", [True, False])
    s.cat("pre.onehot_max", [4, 10, 32])
    s.cat("pre.ordinal_max", [32, 256, 100000])
    if family in _NEEDS_SCALING:
        s.cat("pre.scaling", ["standard", "robust", "quantile"])
    if options.allow_crosses:
        s.cat("pre.crosses", [0, 8, 32])
    if options.allow_selection:
        if s.cat("pre.selection", ["none", "f_test"]) == "f_test":
            s.float("pre.sel_pct", 20.0, 90.0)
    _sample_model(s, family, task)
    return s.params


def _sample_model(s: _Sampler, family: str, task: str) -> None:
    if family == "xgboost":
        s.int("xgb.n_estimators", 20, 600, log=True)
        s.float("xgb.learning_rate", 0.01, 0.3, log=True)
        s.int("xgb.max_depth", 2, 10)
        s.float("xgb.min_child_weight", 0.01, 20.0, log=True)
        s.float("xgb.subsample", 0.5, 1.0)
        s.float("xgb.colsample_bytree", 0.4, 1.0)
        s.float("xgb.reg_lambda", 1e-3, 10.0, log=True)
        s.float("xgb.reg_alpha", 1e-3, 10.0, log=True)
    elif family == "lightgbm":
        s.int("lgb.n_estimators", 20, 600, log=True)
        s.float("lgb.learning_rate", 0.01, 0.3, log=True)
        s.int(*_LGB_LEAVES, log=True)
        s.int("lgb.min_child_samples", 2, 100, log=True)
        s.float("lgb.subsample", 0.5, 1.0)
        s.float("lgb.colsample_bytree", 0.1, 1.0)
        s.cat("lgb.max_bin", LGB_MAX_BINS)
        s.float("lgb.reg_lambda", 1e-3, 10.0, log=True)
        s.float("lgb.reg_alpha", 1e-3, 10.0, log=True)
    elif family == "linear":
        s.float("lin.C", 1e-3, 100.0, log=True)  # inverse strength (alpha = 1/C for ridge/EN)
        if task != "regression":
            s.cat("lin.penalty", ["l2", "l1", "elasticnet"])
        else:
            s.cat("lin.penalty", ["l2", "elasticnet"])
        if s.params["lin.penalty"] == "elasticnet":
            s.float("lin.l1_ratio", 0.05, 0.95)
    elif family in ("random_forest", "extra_trees"):
        p = "rf" if family == "random_forest" else "et"
        s.int(f"{p}.n_estimators", 30, 300, log=True)
        s.int(f"{p}.max_depth", 0, 30)  # 0 = unlimited
        s.float(f"{p}.max_features", 0.1, 1.0)
        s.int(f"{p}.min_samples_leaf", 1, 20, log=True)
    elif family == "mlp":
        s.int("mlp.n_layers", 1, 3)
        s.int("mlp.width", 32, 512, log=True)
        s.float("mlp.dropout", 0.0, 0.5)
        s.float("mlp.lr", 1e-4, 1e-2, log=True)
        s.float("mlp.weight_decay", 1e-6, 1e-2, log=True)
        s.cat("mlp.batch_size", [64, 128, 256])
        s.int("mlp.epochs", 5, 60, log=True)


def resize_config(params: Mapping[str, Any], row_ratio: float) -> dict[str, Any]:
    """``params`` for data with ``row_ratio`` times the rows it was tuned on: LightGBM keeps
    its rows per leaf (``num_leaves`` scaled, within the space's range). A configuration
    tuned on all rows overfits a half sample otherwise: on half of InstEval the parent's best
    LightGBM scored 1.5679 log loss as tuned and 1.5586 with half the leaves (diamonds: 597.9
    vs 596.8 RMSE). XGBoost's depth is left alone; one level less helped as often as it hurt."""
    out = dict(params)
    name, low, high = _LGB_LEAVES
    if name in out and row_ratio > 0:
        out[name] = int(min(high, max(low, round(out[name] * row_ratio))))
    return out


def total_units(params: Mapping[str, Any]) -> int:
    """The fidelity axis length of a config: boosting rounds, trees or epochs (1 = none)."""
    family = params["family"]
    key = {
        "xgboost": "xgb.n_estimators",
        "lightgbm": "lgb.n_estimators",
        "random_forest": "rf.n_estimators",
        "extra_trees": "et.n_estimators",
        "mlp": "mlp.epochs",
    }.get(family)
    return int(params[key]) if key else 1


def describe(params: Mapping[str, Any]) -> str:
    """Readable one-line pipeline, e.g. ``median-impute > encode(oh<=10) > lightgbm``."""
    steps = [f"{params.get('pre.imputation', 'median')}-impute"]
    if params.get("pre.missing_ind", True):
        steps[-1] += "+ind"
    oh, ordinal = params.get("pre.onehot_max", 10), params.get("pre.ordinal_max", 256)
    steps.append(f"encode(oh<={oh},ord<={ordinal},te)")
    if params.get("pre.crosses"):
        steps.append(f"crosses({params['pre.crosses']})")
    if params.get("pre.scaling", "none") != "none":
        steps.append(f"{params['pre.scaling']}-scale")
    if params.get("pre.selection", "none") != "none":
        steps.append(f"select({params['pre.selection']},{params.get('pre.sel_pct', 50):.0f}%)")
    family = params["family"]
    if family == "linear":
        family = f"linear({params.get('lin.penalty', 'l2')})"
    steps.append(family)
    return " > ".join(steps)


def build_preprocessor(params: Mapping[str, Any], task: str, seed: int) -> TabularPreprocessor:
    return TabularPreprocessor(
        task=task,
        imputation=params.get("pre.imputation", "median"),
        missing_indicators=bool(params.get("pre.missing_ind", True)),
        onehot_max=int(params.get("pre.onehot_max", 10)),
        ordinal_max=int(params.get("pre.ordinal_max", 256)),
        scaling=params.get("pre.scaling", "none"),
        crosses=int(params.get("pre.crosses", 0)),
        selection=params.get("pre.selection", "none"),
        selection_percentile=float(params.get("pre.sel_pct", 50.0)),
        seed=seed,
    )


def build_estimator(
    params: Mapping[str, Any],
    task: str,
    seed: int,
    *,
    threads: int = 1,
    device: str = "cpu",
    units: int | None = None,
) -> Any:
    """An unfitted estimator for ``params``; ``units`` overrides the rounds/trees/epochs."""
    family = params["family"]
    clf = task != "regression"
    n = units if units is not None else total_units(params)
    if family == "xgboost":
        import xgboost as xgb

        cls = xgb.XGBClassifier if clf else xgb.XGBRegressor
        return cls(
            n_estimators=n,
            learning_rate=params["xgb.learning_rate"],
            max_depth=params["xgb.max_depth"],
            min_child_weight=params["xgb.min_child_weight"],
            subsample=params["xgb.subsample"],
            colsample_bytree=params["xgb.colsample_bytree"],
            reg_lambda=params["xgb.reg_lambda"],
            reg_alpha=params["xgb.reg_alpha"],
            tree_method="hist",
            device=device,
            n_jobs=threads,
            random_state=seed,
            verbosity=0,
        )
    if family == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if clf else lgb.LGBMRegressor
        return cls(
            n_estimators=n,
            learning_rate=params["lgb.learning_rate"],
            num_leaves=params["lgb.num_leaves"],
            min_child_samples=params["lgb.min_child_samples"],
            subsample=params["lgb.subsample"],
            subsample_freq=1,
            colsample_bytree=params["lgb.colsample_bytree"],
            max_bin=int(params.get("lgb.max_bin", 255)),  # absent in older recorded configs
            reg_lambda=params["lgb.reg_lambda"],
            reg_alpha=params["lgb.reg_alpha"],
            n_jobs=threads,
            random_state=seed,
            verbose=-1,
        )
    if family == "linear":
        return _linear(params, clf, seed)
    if family in ("random_forest", "extra_trees"):
        from sklearn import ensemble as ens

        p = "rf" if family == "random_forest" else "et"
        name = ("RandomForest" if p == "rf" else "ExtraTrees") + (
            "Classifier" if clf else "Regressor"
        )
        depth = int(params[f"{p}.max_depth"])
        return getattr(ens, name)(
            n_estimators=n,
            max_depth=depth or None,
            max_features=params[f"{p}.max_features"],
            min_samples_leaf=params[f"{p}.min_samples_leaf"],
            n_jobs=threads,
            random_state=seed,
        )
    if family == "mlp":
        return TorchMLP(
            task=task,
            hidden=tuple([int(params["mlp.width"])] * int(params["mlp.n_layers"])),
            dropout=params["mlp.dropout"],
            lr=params["mlp.lr"],
            weight_decay=params["mlp.weight_decay"],
            batch_size=int(params["mlp.batch_size"]),
            epochs=n,
            seed=seed,
            device=device,
        )
    raise ValueError(f"unknown model family {family!r}")


def _linear(params: Mapping[str, Any], clf: bool, seed: int) -> Any:
    from sklearn import linear_model as lm

    C = float(params["lin.C"])
    penalty = params.get("lin.penalty", "l2")
    if clf:
        l1 = {"l2": 0.0, "l1": 1.0}.get(penalty, params.get("lin.l1_ratio", 0.5))
        solver = "lbfgs" if l1 == 0.0 else "saga"
        return lm.LogisticRegression(
            C=C, l1_ratio=l1, solver=solver, max_iter=150, tol=1e-3, random_state=seed
        )
    if penalty == "l2":
        return lm.Ridge(alpha=1.0 / C, random_state=seed)
    return lm.ElasticNet(
        alpha=1.0 / C,
        l1_ratio=params.get("lin.l1_ratio", 0.5),
        max_iter=1000,
        tol=1e-3,
        random_state=seed,
    )


def build_model(
    params: Mapping[str, Any],
    task: str,
    classes: Any,
    seed: int,
    *,
    threads: int = 1,
    device: str = "cpu",
) -> TabularModel:
    """An unfitted full pipeline for ``params`` (fit with ``.fit(X, y_codes)``)."""
    return TabularModel(
        build_preprocessor(params, task, seed),
        build_estimator(params, task, seed, threads=threads, device=device),
        task,
        classes,
        family=params["family"],
        description=describe(params),
    )


# --------------------------------------------------------------------------- portfolio
_PRE = {
    "pre.imputation": "median",
    "pre.missing_ind": True,
    "pre.onehot_max": 10,
    "pre.ordinal_max": 256,
    "pre.crosses": 0,
    "pre.selection": "none",
}
_LGB = {
    "lgb.n_estimators": 100,
    "lgb.learning_rate": 0.1,
    "lgb.num_leaves": 31,
    "lgb.min_child_samples": 20,
    "lgb.subsample": 1.0,
    "lgb.colsample_bytree": 1.0,
    "lgb.reg_lambda": 1e-3,
    "lgb.reg_alpha": 1e-3,
    "lgb.max_bin": 255,
}
_XGB = {
    "xgb.n_estimators": 200,
    "xgb.learning_rate": 0.1,
    "xgb.max_depth": 6,
    "xgb.min_child_weight": 1.0,
    "xgb.subsample": 0.8,
    "xgb.colsample_bytree": 0.8,
    "xgb.reg_lambda": 1.0,
    "xgb.reg_alpha": 1e-3,
}
# Strong, diverse default configurations tried before the sampler takes over (FLAML's
# low-cost initial points / AutoGluon's zero-shot portfolio): cheap ones first, so a tiny
# budget still completes several good trials, and varied enough for the ensemble.
PORTFOLIO: tuple[dict[str, Any], ...] = (
    {"family": "linear", "pre.scaling": "standard", "lin.C": 1.0, "lin.penalty": "l2"},
    {"family": "lightgbm", **_LGB},
    {
        "family": "extra_trees",
        "et.n_estimators": 150,
        "et.max_depth": 0,
        "et.max_features": 0.6,
        "et.min_samples_leaf": 1,
    },
    {"family": "xgboost", **_XGB},
    {
        "family": "lightgbm",
        **_LGB,
        "lgb.n_estimators": 300,
        "lgb.learning_rate": 0.05,
        "lgb.num_leaves": 15,
        "lgb.min_child_samples": 5,
        "lgb.subsample": 0.8,
        "lgb.colsample_bytree": 0.6,
        "lgb.reg_lambda": 1.0,
    },
    {"family": "linear", "pre.scaling": "quantile", "lin.C": 0.1, "lin.penalty": "l2"},
    {
        # Many deep trees, each on a few fine-binned features: a random-forest-like booster
        # (FLAML's winner on nassCDS) that the narrow-leaf defaults never reach.
        "family": "lightgbm",
        **_LGB,
        "lgb.n_estimators": 400,
        "lgb.learning_rate": 0.025,
        "lgb.num_leaves": 512,
        "lgb.min_child_samples": 16,
        "lgb.colsample_bytree": 0.2,
        "lgb.reg_lambda": 2.0,
        "lgb.reg_alpha": 0.04,
        "lgb.max_bin": 1023,
    },
    {
        "family": "random_forest",
        "rf.n_estimators": 150,
        "rf.max_depth": 0,
        "rf.max_features": 0.5,
        "rf.min_samples_leaf": 1,
    },
    {
        "family": "xgboost",
        **_XGB,
        "xgb.n_estimators": 400,
        "xgb.learning_rate": 0.05,
        "xgb.max_depth": 3,
        "xgb.colsample_bytree": 0.6,
    },
    {"family": "linear", "pre.scaling": "standard", "lin.C": 10.0, "lin.penalty": "l2"},
    {
        "family": "lightgbm",
        **_LGB,
        "lgb.n_estimators": 500,
        "lgb.learning_rate": 0.03,
        "lgb.num_leaves": 63,
        "lgb.min_child_samples": 10,
        "lgb.subsample": 0.7,
        "lgb.colsample_bytree": 0.5,
        "lgb.reg_lambda": 3.0,
    },
)


def portfolio(options: SpaceOptions) -> list[dict[str, Any]]:
    """The default configurations for ``options``: restricted to its families, fixed values
    applied, optional steps dropped when disallowed. Each is a full parameter dict for
    ``study.enqueue_trial``."""
    out: list[dict[str, Any]] = []
    fixed = dict(options.fixed or {})
    for cfg in PORTFOLIO:
        if (
            cfg["family"] not in options.families
            or fixed.get("family", cfg["family"]) != cfg["family"]
        ):
            continue
        params = {**_PRE, **cfg}
        if not options.allow_crosses:
            params.pop("pre.crosses")
        if not options.allow_selection:
            params.pop("pre.selection")
        if len(options.families) == 1:
            params.pop("family")
        params.update({k: v for k, v in fixed.items() if k in params})
        if params not in out:
            out.append(params)
    return out

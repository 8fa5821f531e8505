"""Run inside AutoGluon's own venv (bench/serving_automl.py --autogluon): fit a
TabularPredictor on train.csv within a time limit, ``refit_full`` + ``persist``, then time
single-row ``predict_proba``/``predict`` in process and score the held-out rows.

    python _autogluon_latency.py <dir with train.csv, test.csv> <task> <time_limit_s> <calls>

Prints one JSON line: p50/p99 single-row latency (ms), the test predictions and the fit time.
Imports nothing from ATLAS (its venv has AutoGluon's pins)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor

PROBLEM = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "root_mean_squared_error"}


def main() -> None:
    folder, task, limit, calls = (
        Path(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    train = pd.read_csv(folder / "train.csv")
    test = pd.read_csv(folder / "test.csv").drop(columns=["target"])
    start = time.perf_counter()
    predictor = TabularPredictor(
        label="target",
        problem_type=PROBLEM[task],
        eval_metric=METRIC[task],
        path=str(folder / "ag"),
        verbosity=0,
    ).fit(train, time_limit=limit)
    predictor.refit_full()
    predictor.persist()
    fit_s = time.perf_counter() - start
    regression = task == "regression"

    def answer(frame: pd.DataFrame) -> object:
        return predictor.predict(frame) if regression else predictor.predict_proba(frame)

    rows = [test.iloc[[i % len(test)]] for i in range(calls)]
    for r in rows[:20]:  # warm-up
        answer(r)
    lat = []
    for r in rows:
        t = time.perf_counter()
        answer(r)
        lat.append((time.perf_counter() - t) * 1000)
    pred = answer(test)
    values = (
        np.asarray(pred, dtype=float).tolist()
        if regression
        else np.asarray(pred[sorted(pred.columns)], dtype=float).tolist()  # type: ignore[index]
    )
    print(
        json.dumps(
            {
                "fit_s": fit_s,
                "model": str(predictor.model_best),
                "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
                "calls": calls,
                "test_pred": values,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Gradient boosting on a Dask cluster (``xgboost.dask``, ``lightgbm.dask``) for data larger
than one process, with ordinary (single-process) estimators as the result.

:class:`DaskBoosting` owns the cluster connection of one job: a ``LocalCluster`` of
``local_workers`` processes by default, or the running scheduler at ``scheduler_address``
(``ATLAS_TRAINER_DASK__SCHEDULER_ADDRESS``). :meth:`DaskBoosting.grow` is the Dask
counterpart of :func:`atlas_trainer.automl.evaluate.grow`: it continues a booster from
``done`` to ``target`` rounds with the rows split into one partition per worker, in chunks of
rounds so that a deadline or a cancel interrupts it between chunks, and returns a plain
``XGBClassifier`` / ``LGBMRegressor`` ... -- so bundles, reports and serving see the same
model whichever engine fitted it.

Inside AutoML the preprocessed fold is already in the trainer's memory: Dask spreads the
fitting over the cluster's workers (and machines). :func:`to_dask` also accepts Dask
collections (e.g. ``dask.dataframe.read_parquet`` of a dataset bigger than one process), which
the workers then read themselves.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from atlas_core.errors import FailedPrecondition
from atlas_trainer.config import DaskSettings

BOOSTERS = ("xgboost", "lightgbm")
# Rounds per distributed fit between two check() calls: each fit pays a collective set-up
# (tracker / socket ring), so chunks are larger than a single round.
ROUNDS_PER_CHUNK = 50


class DaskBoosting:
    """One job's Dask cluster for boosting. Thread-safe: trials running side by side take
    turns on the cluster (one distributed fit at a time -- the cluster is the parallelism, and
    LightGBM's socket ring per fit must not interleave with another's)."""

    def __init__(self, settings: DaskSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self.fits = 0  # distributed fits run (the report's evidence that Dask was used)

    # -- lifecycle ----------------------------------------------------------------------------
    def open(self) -> DaskBoosting:
        """Connect (or start the local cluster). Raises FailedPrecondition
        (``DASK_SCHEDULER_UNREACHABLE``) naming the address when the scheduler is not there."""
        from distributed import Client, LocalCluster

        s = self.settings
        if s.scheduler_address:
            try:
                self._client = Client(
                    s.scheduler_address, timeout=s.connect_timeout_seconds, set_as_default=False
                )
            except (OSError, TimeoutError, ValueError) as err:
                raise FailedPrecondition(
                    f"cannot reach the Dask scheduler at {s.scheduler_address!r} "
                    f"(ATLAS_TRAINER_DASK__SCHEDULER_ADDRESS) within "
                    f"{s.connect_timeout_seconds:g} s: {err}; start it, fix the address "
                    "(tcp://host:8786), or clear it to use a local cluster",
                    reason="DASK_SCHEDULER_UNREACHABLE",
                    metadata={"address": s.scheduler_address},
                ) from err
        else:
            self._cluster = LocalCluster(
                n_workers=s.local_workers,
                threads_per_worker=s.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,  # no web server on a training host by default
            )
            self._client = Client(self._cluster, set_as_default=False)
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskBoosting:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("DaskBoosting is not open")
        return self._client

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def applies(self, family: str, rows: int) -> bool:
        """Whether a ``family`` fit on ``rows`` rows goes to the cluster."""
        if family not in BOOSTERS or self.settings.engine == "never":
            return False
        return self.settings.engine == "always" or rows >= self.settings.min_rows

    # -- fitting ------------------------------------------------------------------------------
    def grow(
        self,
        est: Any,
        family: str,
        X: Any,
        y: Any,
        done: int,
        target: int,
        check: Callable[[], None] = lambda: None,
    ) -> Any:
        """Continue ``est`` (an unfitted or ``done``-round XGBoost/LightGBM sklearn estimator)
        to ``target`` rounds on the cluster; returns an ordinary fitted estimator of the same
        class and parameters. ``check()`` runs between chunks of rounds."""
        if family not in BOOSTERS:
            raise ValueError(f"Dask boosting fits {BOOSTERS}, not {family!r}")
        with self._lock:
            dX, dy = to_dask(X, y, self.workers)
            dX, dy = self.client.persist([dX, dy])  # sent once, reused by every chunk
            booster = _booster_of(est, family) if done else None
            fitted: Any = None
            size = done
            while size < target:
                check()
                rounds = min(ROUNDS_PER_CHUNK, target - size)
                fitted = self._fit_chunk(est, family, dX, dy, rounds, booster)
                booster = _booster_of(fitted, family)
                size += rounds
                self.fits += 1
            check()
        if fitted is None:
            return est
        return _local_estimator(est, family, fitted, target - done)

    def _fit_chunk(self, est: Any, family: str, dX: Any, dy: Any, rounds: int, booster: Any) -> Any:
        params = {k: v for k, v in est.get_params().items() if k not in ("callbacks", "n_jobs")}
        params["n_estimators"] = rounds
        clf = hasattr(est, "predict_proba")
        if family == "xgboost":
            import xgboost.dask as xgb_dask

            cls = xgb_dask.DaskXGBClassifier if clf else xgb_dask.DaskXGBRegressor
            model = cls(**params, n_jobs=self.settings.threads_per_worker)
            model.client = self.client
            # xgboost.dask and lightgbm.dask also ask distributed for "the" current client
            with self.client.as_current():
                return model.fit(dX, dy, xgb_model=booster, verbose=False)
        import lightgbm.dask as lgb_dask

        cls = lgb_dask.DaskLGBMClassifier if clf else lgb_dask.DaskLGBMRegressor
        model = cls(**params, client=self.client)  # threads: the workers' own
        with self.client.as_current():
            return model.fit(dX, dy, init_model=booster)


def to_dask(X: Any, y: Any, partitions: int) -> tuple[Any, Any]:
    """Dask arrays of ``X`` and ``y`` with one row block per worker (collections pass
    through)."""
    import dask.array as da

    if hasattr(X, "dask") and hasattr(y, "dask"):
        return X, y
    X, y = np.asarray(X), np.asarray(y)
    rows = max(1, math.ceil(len(y) / max(1, partitions)))
    return da.from_array(X, chunks=(rows, X.shape[1])), da.from_array(y, chunks=(rows,))


def _booster_of(model: Any, family: str) -> Any:
    return model.get_booster() if family == "xgboost" else model.booster_


def _local_estimator(est: Any, family: str, fitted: Any, rounds: int) -> Any:
    """The fitted Dask model as an ordinary estimator of ``est``'s class and parameters."""
    if family == "lightgbm":
        local = fitted.to_local()
        local.set_params(n_jobs=est.get_params()["n_jobs"], n_estimators=rounds)
        return local
    # XGBoost's sklearn models load a saved model with their sklearn attributes (classes,
    # objective): the same route as a model saved by one process and loaded by another.
    raw = fitted.get_booster().save_raw("ubj")
    local = type(est)(**est.get_params())
    local.load_model(bytearray(raw))
    local.set_params(n_estimators=rounds)
    if hasattr(fitted, "n_classes_") and not hasattr(local, "n_classes_"):
        local.n_classes_ = fitted.n_classes_
    return local

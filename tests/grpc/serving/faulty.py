"""A model that works on its training frame but fails on small online batches: the kind of
bug a canary exists to catch. Importable by name, so joblib can unpickle it."""

from __future__ import annotations

from typing import Any

import numpy as np


class FailsOnline:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.classes_ = inner.classes_

    def predict(self, X: Any) -> np.ndarray:
        self._check(X)
        return self.inner.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        self._check(X)
        return self.inner.predict_proba(X)

    @staticmethod
    def _check(X: Any) -> None:
        if len(X) < 500:
            raise RuntimeError("feature store column mismatch")

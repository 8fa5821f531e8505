"""A trained deep-learning classifier as a bundle model: input encoding + a TorchScript net.

The trainer's deep-learning jobs build their networks (MLP, CNN, MobileNet-style, text CNN,
embedding bag) in trainer code; the bundle holds the network as TorchScript bytes, so serving
runs it with torch alone and never imports trainer code. What turns a request frame into the
net's input tensor lives here, used by the trainer at training time too, so training and
serving encode rows the same way:

- ``tabular`` / ``image``: numeric columns, standardised with the training mean and std (a
  missing value becomes the mean); ``image`` reshapes each row to ``image_shape`` (C, H, W).
- ``text``: one string column, tokenised by :func:`text_token_ids` into a padded id matrix
  (0 = padding): ``tokens`` maps words through the training vocabulary (1 = unknown),
  ``hashed`` maps word n-grams to hash buckets (fastText's bag of n-grams).
"""

from __future__ import annotations

import io
import re
import threading
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.errors import InvalidArgument

PAD_ID = 0
UNKNOWN_ID = 1
_WORD = re.compile(r"[\w@#']+")


def tokenize(text: Any) -> list[str]:
    """Lower-cased words (letters, digits, ``@``, ``#`` and apostrophes kept); ``None`` and
    NaN give no words."""
    if text is None or (isinstance(text, float) and text != text):
        return []
    return _WORD.findall(str(text).lower())


def _ngrams(words: list[str], n: int) -> list[str]:
    grams = list(words)
    for size in range(2, n + 1):
        grams += [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    return grams


def text_token_ids(texts: Sequence[Any], encoding: dict[str, Any]) -> np.ndarray:
    """``[len(texts), max_len]`` int64 ids, 0-padded, per ``encoding``:
    ``{"mode": "tokens", "vocab": {word: id}, "max_len": L}`` or
    ``{"mode": "hashed", "buckets": B, "ngrams": n, "max_len": L}`` (ids 1..B; crc32, so
    the same in every process)."""
    max_len = int(encoding["max_len"])
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    hashed = encoding["mode"] == "hashed"
    vocab = encoding.get("vocab") or {}
    buckets = int(encoding.get("buckets") or 1)
    ngrams = int(encoding.get("ngrams") or 1)
    for row, text in enumerate(texts):
        words = tokenize(text)
        if hashed:
            ids = [zlib.crc32(g.encode()) % buckets + 1 for g in _ngrams(words, ngrams)]
        else:
            ids = [vocab.get(w, UNKNOWN_ID) for w in words]
        ids = ids[:max_len]
        out[row, : len(ids)] = ids
    return out


class TorchNetModel:
    """``predict`` / ``predict_proba`` of a classifier network over frames (or, for numeric
    inputs, float matrices in ``columns`` order: serving's fast path).

    ``encoding``: ``{"kind": "tabular" | "image" | "text", ...}`` — numeric kinds carry
    ``mean`` and ``std`` lists (and ``image_shape``), text carries ``column`` plus the
    :func:`text_token_ids` settings. ``script``: the TorchScript module's bytes (logits out).
    The loaded module is shared by threads behind a lock-free read; torch runs it thread-safely
    in inference mode.
    """

    def __init__(
        self,
        *,
        columns: Sequence[str],
        classes: Sequence[Any],
        encoding: dict[str, Any],
        script: bytes,
    ) -> None:
        self.columns = list(columns)
        self.classes_ = np.asarray(list(classes))
        self.encoding = dict(encoding)
        self.script = bytes(script)
        self._net: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_net"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _module(self) -> Any:
        if self._net is None:
            import torch

            with self._lock:
                if self._net is None:
                    net = torch.jit.load(io.BytesIO(self.script), map_location="cpu")
                    net.eval()
                    self._net = net
        return self._net

    def encode(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The net's input array for rows ``X``."""
        kind = self.encoding["kind"]
        if kind == "text":
            if isinstance(X, pd.DataFrame):
                texts = X[self.encoding["column"]].tolist()
            else:
                texts = np.asarray(X, dtype=object)[:, 0].tolist()
            return text_token_ids(texts, self.encoding)
        if isinstance(X, pd.DataFrame):
            matrix = X[self.columns].to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            matrix = np.asarray(X, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.columns):
            raise InvalidArgument(
                f"expected {len(self.columns)} input columns, got shape {matrix.shape}",
                reason="INVALID_FEATURES",
            )
        mean = np.asarray(self.encoding["mean"], dtype=np.float32)
        std = np.asarray(self.encoding["std"], dtype=np.float32)
        scaled = (matrix - mean) / std
        scaled = np.where(np.isfinite(scaled), scaled, 0.0).astype(np.float32)
        if kind == "image":
            return scaled.reshape(len(scaled), *self.encoding["image_shape"])
        return scaled

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        import torch

        inputs = torch.from_numpy(self.encode(X))
        with torch.inference_mode():
            logits = self._module()(inputs)
            proba = torch.softmax(logits.double(), dim=1).numpy()
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

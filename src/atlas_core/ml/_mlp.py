"""A PyTorch multilayer perceptron with the scikit-learn estimator API.

torch is imported lazily (only when fitting or predicting) so importing atlas_core.ml stays
cheap. Fitted weights are kept as NumPy arrays, so pickles load on machines with or without a
GPU, and training can continue epoch by epoch (``fit(..., warm_start=True)``), which the AutoML
engine uses as its fidelity for Hyperband pruning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

# Python drives every optimizer step, so an epoch of small batches over many rows costs
# seconds on a CPU; batches grow so that no epoch takes more steps than this.
MAX_STEPS_PER_EPOCH = 128


def pick_device(device: str = "auto") -> str:
    """``"cuda"`` when requested or when ``auto`` and a GPU is visible, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TorchMLP(BaseEstimator):
    """Feed-forward net: Linear -> ReLU -> Dropout blocks, trained with AdamW.

    ``task``: ``binary`` / ``multiclass`` (``y`` = class codes 0..C-1, cross-entropy) or
    ``regression`` (standardised target, MSE). Inputs are standardised inside the model.
    ``batch_size`` is a minimum: on large inputs batches grow to keep an epoch within
    ``MAX_STEPS_PER_EPOCH`` optimizer steps.
    Deterministic for a fixed ``seed`` on CPU. ``fit(X, y, epochs=k, warm_start=True)``
    trains ``k`` more epochs; ``on_epoch(total_epochs) -> bool`` is called after each epoch and
    stops training when it returns True (deadlines, cancellation).
    """

    weights_: dict[str, np.ndarray]  # the fitted state_dict, as numpy (picklable, no torch)

    def __init__(
        self,
        task: str = "binary",
        hidden: Sequence[int] = (128,),
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 128,
        epochs: int = 30,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.task = task
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.device = device

    # -- torch plumbing (not pickled) ------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> Any:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        layers: list[Any] = []
        width = n_in
        for h in self.hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(self.dropout)]
            width = int(h)
        layers.append(nn.Linear(width, n_out))
        return nn.Sequential(*layers)

    def _module(self) -> Any:
        import torch

        mod = getattr(self, "_torch_module", None)
        if mod is None:
            mod = self._build(self.n_features_in_, self.n_outputs_)
            mod.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
            mod.eval()
            self._torch_module = mod
        return mod

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_torch_module", None)
        state.pop("_optimizer", None)
        state.pop("_generator", None)
        return state

    # -- sklearn API -------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int | None = None,
        warm_start: bool = False,
        on_epoch: Callable[[int], bool] | None = None,
    ) -> TorchMLP:
        import torch

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        device = pick_device(self.device)
        if not (warm_start and hasattr(self, "weights_")):
            self.n_features_in_ = X.shape[1]
            self.mean_ = X.mean(axis=0)
            self.std_ = X.std(axis=0) + 1e-6
            if self.task == "regression":
                self.n_outputs_ = 1
                self.y_mean_, self.y_std_ = float(y.mean()), float(y.std() + 1e-9)
            else:
                self.classes_ = np.arange(int(y.max()) + 1)
                self.n_outputs_ = len(self.classes_)
            self.epochs_done_ = 0
            self._torch_module = self._build(self.n_features_in_, self.n_outputs_)
            self._optimizer = None
            self._generator = torch.Generator().manual_seed(self.seed)
        mod = self._module().to(device)
        optimizer = getattr(self, "_optimizer", None)
        if optimizer is None:
            optimizer = torch.optim.AdamW(
                mod.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            self._optimizer = optimizer
        gen = getattr(self, "_generator", None) or torch.Generator().manual_seed(self.seed)
        self._generator = gen
        xt = torch.from_numpy((X - self.mean_) / self.std_).to(device)
        if self.task == "regression":
            yt = torch.from_numpy(((y - self.y_mean_) / self.y_std_).astype(np.float32)).to(device)
            loss_fn: Any = lambda out, tgt: torch.nn.functional.mse_loss(out[:, 0], tgt)  # noqa: E731
        else:
            yt = torch.from_numpy(y.astype(np.int64)).to(device)
            loss_fn = torch.nn.functional.cross_entropy
        n = len(xt)
        bs = max(1, min(max(int(self.batch_size), math.ceil(n / MAX_STEPS_PER_EPOCH)), n))
        mod.train()
        for _ in range(self.epochs if epochs is None else epochs):
            perm = torch.randperm(n, generator=gen).to(device)
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                if len(idx) < 2 and n >= 2:
                    continue  # a batch of one breaks nothing but adds noise
                optimizer.zero_grad()
                loss = loss_fn(mod(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
            self.epochs_done_ += 1
            if on_epoch is not None and on_epoch(self.epochs_done_):
                break
        mod.eval()
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in mod.state_dict().items()}
        self._torch_module = mod.cpu()
        return self

    def _forward(self, X: np.ndarray) -> np.ndarray:
        import torch

        xt = torch.from_numpy((np.asarray(X, dtype=np.float32) - self.mean_) / self.std_)
        with torch.no_grad():
            return self._module()(xt).numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self._forward(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return self._forward(X)[:, 0] * self.y_std_ + self.y_mean_
        return self.predict_proba(X).argmax(axis=1)

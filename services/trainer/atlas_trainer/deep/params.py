"""The configuration of a deep-learning job, validated when it is submitted.

``DeepLearningSpec.params`` is a free-form Struct in the contract; here it becomes a typed
model (unknown keys and out-of-range values refused), and every error names the field to fix
(``deep_learning.params.<name>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import InvalidArgument

# Architecture -> the input it reads.
ARCHITECTURES = {
    "mlp": "tabular",
    "cnn": "image",
    "mobilenet": "image",
    "text_cnn": "text",
    "embedding_bag": "text",
}
# Params that only some architectures read (the rest apply to every one).
_ONLY_FOR = {
    "hidden": {"mlp"},
    "channels": {"cnn", "mobilenet"},
    "image_column": {"cnn", "mobilenet"},
    "image_shape": {"cnn", "mobilenet"},
    "text_column": {"text_cnn", "embedding_bag"},
    "text_mode": {"text_cnn", "embedding_bag"},
    "ngrams": {"text_cnn", "embedding_bag"},
    "buckets": {"text_cnn", "embedding_bag"},
    "max_vocab": {"text_cnn", "embedding_bag"},
    "max_len": {"text_cnn", "embedding_bag"},
    "embedding_dim": {"text_cnn", "embedding_bag"},
    "kernel_sizes": {"text_cnn"},
    "filters": {"text_cnn"},
    "pretrain_epochs": {"text_cnn", "embedding_bag"},
}
MAX_EPOCHS = 1000
MAX_BATCH = 65536


class DeepParams(BaseModel):
    """``deep_learning.params``: optimizer, architecture and input settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # Recompute each block's activations in backward (torch.utils.checkpoint).
    checkpointing: bool = False
    # mlp: hidden layer widths.
    hidden: list[int] = Field(default_factory=lambda: [128], min_length=1, max_length=32)
    # cnn / mobilenet: channels per block (each block after the first halves H and W while
    # they are at least 2).
    channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1, max_length=32)
    # cnn / mobilenet: a tensor column (list of floats per row) or, when empty, every numeric
    # feature column as pixels; image_shape [C, H, W] (empty: 1 channel, square).
    image_column: str = ""
    image_shape: list[int] = Field(default_factory=list, max_length=3)
    # text models: the text column (empty: the only string column), word ids.
    text_column: str = ""
    text_mode: Literal["tokens", "hashed"] = "tokens"
    ngrams: int = Field(default=2, ge=1, le=4)
    buckets: int = Field(default=1 << 14, ge=16, le=1 << 22)
    max_vocab: int = Field(default=10000, ge=16, le=1 << 21)
    max_len: int = Field(default=64, ge=4, le=4096)
    embedding_dim: int = Field(default=32, ge=2, le=4096)
    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 4, 5], min_length=1, max_length=8)
    filters: int = Field(default=32, ge=1, le=4096)
    # text models, text_mode tokens: epochs of word2vec-style (skip-gram) pretraining of the
    # embedding on the training text before the classifier trains; 0: none.
    pretrain_epochs: int = Field(default=0, ge=0, le=50)


@dataclass(frozen=True)
class DeepConfig:
    """A deep-learning job's settings, defaults filled in."""

    architecture: str
    params: DeepParams
    workers: int
    epochs: int
    batch_size: int
    checkpoint_every: int
    validation_fraction: float
    max_restarts: int
    seed: int

    @property
    def input_kind(self) -> str:
        return ARCHITECTURES[self.architecture]

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "params": self.params.model_dump(),
            "workers": self.workers,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "checkpoint_every": self.checkpoint_every,
            "validation_fraction": self.validation_fraction,
            "max_restarts": self.max_restarts,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeepConfig:
        return cls(**{**data, "params": DeepParams(**data["params"])})


def _bad(field: str, message: str, *, reason: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", reason=reason, metadata={"field": field})


def deep_config(spec: pb.TrainingJobSpec) -> DeepConfig:
    """The validated configuration of ``spec.deep_learning``.

    Raises:
        InvalidArgument: ``BAD_ARCHITECTURE``, ``BAD_DEEP_PARAMS``, ``UNSUPPORTED_KIND``
            (nas) or ``UNSUPPORTED_TASK`` (regression), naming the field.
    """
    dl = spec.deep_learning
    if dl.HasField("nas"):
        raise _bad(
            "deep_learning.nas",
            "architecture search is not offered by this trainer version; name one architecture",
            reason="UNSUPPORTED_KIND",
        )
    if spec.task_type == pb.TASK_TYPE_REGRESSION:
        raise _bad(
            "task_type",
            "deep-learning jobs classify; use automl for regression",
            reason="UNSUPPORTED_TASK",
        )
    arch = dl.architecture.strip().lower()
    if arch not in ARCHITECTURES:
        raise _bad(
            "deep_learning.architecture",
            f"unknown architecture {dl.architecture!r}; one of {', '.join(ARCHITECTURES)}",
            reason="BAD_ARCHITECTURE",
        )
    raw = json_format.MessageToDict(dl.params) if dl.HasField("params") else {}
    for key in raw:
        allowed = _ONLY_FOR.get(key)
        if allowed is not None and arch not in allowed:
            raise _bad(
                f"deep_learning.params.{key}",
                f"does not apply to architecture {arch} (only to {', '.join(sorted(allowed))})",
                reason="BAD_DEEP_PARAMS",
            )
    try:
        params = DeepParams(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _bad(
            f"deep_learning.params.{where}", str(first["msg"]), reason="BAD_DEEP_PARAMS"
        ) from None
    _check_lists(params)
    if params.pretrain_epochs and params.text_mode != "tokens":
        raise _bad(
            "deep_learning.params.pretrain_epochs",
            "pretraining learns word vectors: it needs text_mode tokens, not hashed n-grams",
            reason="BAD_DEEP_PARAMS",
        )
    for field, value, low, high in (
        ("deep_learning.epochs", dl.epochs, 0, MAX_EPOCHS),
        ("deep_learning.batch_size", dl.batch_size, 0, MAX_BATCH),
        ("deep_learning.workers", dl.workers, 0, 1024),
        ("deep_learning.checkpoint_every_epochs", dl.checkpoint_every_epochs, 0, MAX_EPOCHS),
        ("deep_learning.max_restarts", dl.max_restarts, 0, 100),
    ):
        if not low <= value <= high:
            raise _bad(
                field,
                f"must be within {low}..{high} (0: the default), got {value}",
                reason="BAD_DEEP_PARAMS",
            )
    fraction = dl.validation_fraction
    if not 0.0 <= fraction < 0.9:
        raise _bad(
            "deep_learning.validation_fraction",
            f"must be within 0..0.9, got {fraction}",
            reason="BAD_DEEP_PARAMS",
        )
    return DeepConfig(
        architecture=arch,
        params=params,
        workers=dl.workers or 1,
        epochs=dl.epochs or 10,
        batch_size=dl.batch_size or 64,
        checkpoint_every=dl.checkpoint_every_epochs or 1,
        validation_fraction=fraction or 0.1,
        max_restarts=dl.max_restarts,
        seed=int(spec.seed),
    )


def _check_lists(params: DeepParams) -> None:
    for name, values, low, high in (
        ("hidden", params.hidden, 1, 65536),
        ("channels", params.channels, 1, 4096),
        ("kernel_sizes", params.kernel_sizes, 1, 64),
        ("image_shape", params.image_shape, 1, 65536),
    ):
        for i, value in enumerate(values):
            if not low <= value <= high:
                raise _bad(
                    f"deep_learning.params.{name}[{i}]",
                    f"must be within {low}..{high}, got {value}",
                    reason="BAD_DEEP_PARAMS",
                )
    if params.image_shape and len(params.image_shape) != 3:
        raise _bad(
            "deep_learning.params.image_shape",
            f"give [channels, height, width], got {params.image_shape}",
            reason="BAD_DEEP_PARAMS",
        )

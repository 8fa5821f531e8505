"""The configuration of a deep-learning job, validated when it is submitted.

``DeepLearningSpec.params`` is a free-form Struct in the contract; here it becomes a typed
model (unknown keys and out-of-range values refused), and every error names the field to fix
(``deep_learning.params.<name>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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

# One-shot NAS (deep_learning.nas): the architectures with a supernet and the search's choices.
SUPERNET_ARCHITECTURES = ("mlp", "cnn")
NAS_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
NAS_DEFAULT_WIDTHS = {"mlp": (32, 64, 96, 128), "cnn": (8, 12, 16, 24, 32)}
NAS_DEFAULT_KERNELS = (3, 5)
NAS_MAX_LAYERS = 8
# The search space sets these (nas.widths / nas.kernel_sizes); recomputation is not offered.
_NOT_WITH_NAS = ("hidden", "channels", "checkpointing")


@dataclass(frozen=True)
class NasConfig:
    """``deep_learning.nas`` with defaults filled in (0 limits: none)."""

    max_layers: int
    widths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    activations: tuple[str, ...]
    max_parameters: int
    max_macs: int
    population: int
    generations: int
    max_candidates: int
    fine_tune_epochs: int

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NasConfig:
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)


class DeepParams(BaseModel):
    """``deep_learning.params``: optimizer, architecture and input settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # Recompute activations in backward (torch.utils.checkpoint; see deep.models):
    # "segments" (Chen et al.'s sqrt(n) segments; what true means), "every_block", "off"
    # (false, the default).
    checkpointing: Literal["off", "segments", "every_block"] = "off"
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
    # Model parallelism for many classes (deep.sharded_head): the last layer split by class
    # over the workers (needs workers >= 2), trained with a softmax or ArcFace margin loss;
    # sharded_classes: the classes the layer is built for (0: the target's; more reserves
    # rows for classes to come, fewer than the target has is refused).
    sharded_classifier: bool = False
    margin: Literal["softmax", "arcface"] = "softmax"
    arcface_scale: float = Field(default=16.0, gt=0.0, le=256.0)
    arcface_margin: float = Field(default=0.2, ge=0.0, le=1.5)
    sharded_classes: int = Field(default=0, ge=0, le=1 << 24)

    @field_validator("checkpointing", mode="before")
    @classmethod
    def _checkpointing_flag(cls, value: Any) -> Any:
        # Booleans as before: true asks for recomputation, which now means segments.
        if isinstance(value, bool):
            return "segments" if value else "off"
        return value


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
    # One-shot architecture search (deep_learning.nas), or None.
    nas: NasConfig | None = None

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
            "nas": self.nas.to_json() if self.nas else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeepConfig:
        nas = NasConfig.from_json(data["nas"]) if data.get("nas") else None
        return cls(**{**data, "params": DeepParams(**data["params"]), "nas": nas})


def _bad(field: str, message: str, *, reason: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", reason=reason, metadata={"field": field})


def deep_config(spec: pb.TrainingJobSpec) -> DeepConfig:
    """The validated configuration of ``spec.deep_learning``.

    Raises:
        InvalidArgument: ``BAD_ARCHITECTURE``, ``BAD_DEEP_PARAMS``, ``BAD_NAS_SPEC`` or
            ``UNSUPPORTED_TASK`` (regression), naming the field.
    """
    dl = spec.deep_learning
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
    nas = nas_config(dl, arch, raw) if dl.HasField("nas") else None
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
    _check_sharded(params, raw, dl.workers)
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
        nas=nas,
    )


def _nas_bad(field: str, message: str) -> InvalidArgument:
    return _bad(field, message, reason="BAD_NAS_SPEC")


def nas_config(dl: pb.DeepLearningSpec, arch: str, raw: dict[str, Any]) -> NasConfig:
    """``deep_learning.nas`` validated (limits against the data: :func:`check_nas_limits`).

    Raises:
        InvalidArgument: ``BAD_NAS_SPEC`` naming the field.
    """
    nas = dl.nas
    if arch not in SUPERNET_ARCHITECTURES:
        raise _nas_bad(
            "deep_learning.architecture",
            f"architecture {arch} has no supernet for deep_learning.nas; "
            f"one of {', '.join(SUPERNET_ARCHITECTURES)}",
        )
    if dl.workers > 1:
        raise _nas_bad("deep_learning.workers", "architecture search trains in one process: 0 or 1")
    for key in _NOT_WITH_NAS:
        if key in raw:
            raise _nas_bad(
                f"deep_learning.params.{key}",
                "does not apply with deep_learning.nas (the search space sets widths and "
                "kernels: nas.widths, nas.kernel_sizes)",
            )
    for name, value, low, high in (
        ("max_layers", nas.max_layers, 0, NAS_MAX_LAYERS),
        ("population", nas.population, 0, 1000),
        ("generations", nas.generations, 0, 1000),
        ("max_candidates", nas.max_candidates, 0, 1_000_000),
        ("fine_tune_epochs", nas.fine_tune_epochs, 0, 100),
    ):
        if not low <= value <= high:
            raise _nas_bad(
                f"deep_learning.nas.{name}",
                f"must be within {low}..{high} (0: the default), got {value}",
            )
    if 0 < nas.population < 4:
        raise _nas_bad(
            "deep_learning.nas.population", f"must be within 4..1000 (0: 50), got {nas.population}"
        )
    for name in ("max_parameters", "max_macs"):
        if nas.HasField(name) and getattr(nas, name) <= 0:
            raise _nas_bad(
                f"deep_learning.nas.{name}",
                f"a limit must be positive (unset: no limit), got {getattr(nas, name)}",
            )
    for i, width in enumerate(nas.widths):
        if not 1 <= width <= 4096:
            raise _nas_bad(f"deep_learning.nas.widths[{i}]", f"must be within 1..4096, got {width}")
    if nas.kernel_sizes and arch != "cnn":
        raise _nas_bad(
            "deep_learning.nas.kernel_sizes", f"does not apply to architecture {arch} (only cnn)"
        )
    for i, k in enumerate(nas.kernel_sizes):
        if not (1 <= k <= 15 and k % 2 == 1):
            raise _nas_bad(
                f"deep_learning.nas.kernel_sizes[{i}]",
                f"must be odd and within 1..15 (a smaller kernel is the centre crop), got {k}",
            )
    for i, name in enumerate(nas.activations):
        if name not in NAS_ACTIVATIONS:
            raise _nas_bad(
                f"deep_learning.nas.activations[{i}]",
                f"unknown activation {name!r}; one of {', '.join(NAS_ACTIVATIONS)}",
            )
    population = nas.population or 50
    generations = nas.generations or 20
    return NasConfig(
        max_layers=nas.max_layers or 3,
        widths=tuple(sorted(set(nas.widths))) or NAS_DEFAULT_WIDTHS[arch],
        kernel_sizes=(tuple(sorted(set(nas.kernel_sizes))) or NAS_DEFAULT_KERNELS)
        if arch == "cnn"
        else (),
        activations=tuple(dict.fromkeys(nas.activations)) or ("relu",),
        max_parameters=nas.max_parameters if nas.HasField("max_parameters") else 0,
        max_macs=nas.max_macs if nas.HasField("max_macs") else 0,
        population=population,
        generations=generations,
        max_candidates=nas.max_candidates,
        fine_tune_epochs=nas.fine_tune_epochs or 2,
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


_SHARDED_ONLY = ("margin", "arcface_scale", "arcface_margin", "sharded_classes")


def _check_sharded(params: DeepParams, raw: dict[str, Any], workers: int) -> None:
    if not params.sharded_classifier:
        for key in _SHARDED_ONLY:
            if key in raw:
                raise _bad(
                    f"deep_learning.params.{key}",
                    "applies only with params.sharded_classifier: true",
                    reason="BAD_DEEP_PARAMS",
                )
        return
    if workers < 2:
        raise _bad(
            "deep_learning.workers",
            f"params.sharded_classifier splits the last layer over the workers: it needs "
            f"workers >= 2, got {workers or 1}",
            reason="BAD_DEEP_PARAMS",
        )
    if params.margin != "arcface":
        for key in ("arcface_scale", "arcface_margin"):
            if key in raw:
                raise _bad(
                    f"deep_learning.params.{key}",
                    "applies only with params.margin: arcface",
                    reason="BAD_DEEP_PARAMS",
                )

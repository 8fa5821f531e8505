"""Feature-group schema and the packed record layout derived from it.

Mirrors the contract messages ``FeatureGroupSpec``, ``FeatureSpec``, ``FeatureSlot`` and
``RecordLayout`` of ``atlas.data.v1`` without importing them (the servicer converts).

A record is packed into four blocks -- float32, float64, int64 and string -- and every feature
occupies a fixed run of values ("slot") in exactly one block, in schema order. Wide float32
vectors therefore travel and are stored as one raw little-endian byte run per record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType

import numpy as np

from atlas_core.errors import InvalidArgument, NotFound

MAX_VECTOR_DIMS = 16_384
GROUP_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
FEATURE_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
# Names end up in LMDB sub-database names, Redis keys and Parquet columns: keep them short.
MAX_NAME_LENGTH = 128


class EntityKeyType(str, Enum):
    """Type of a feature group's entity key."""

    INT64 = "int64"
    STRING = "string"


class FeatureType(str, Enum):
    """Data type of one feature."""

    FLOAT32 = "float32"
    FLOAT32_VECTOR = "float32_vector"
    FLOAT64 = "float64"
    INT64 = "int64"
    STRING = "string"
    CATEGORICAL = "categorical"
    BOOL = "bool"


class ValueBlock(str, Enum):
    """The block of a packed record a feature's values live in."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT64 = "int64"
    STRING = "string"


BLOCK_OF_TYPE: Mapping[FeatureType, ValueBlock] = MappingProxyType(
    {
        FeatureType.FLOAT32: ValueBlock.FLOAT32,
        FeatureType.FLOAT32_VECTOR: ValueBlock.FLOAT32,
        FeatureType.FLOAT64: ValueBlock.FLOAT64,
        FeatureType.INT64: ValueBlock.INT64,
        FeatureType.BOOL: ValueBlock.INT64,
        FeatureType.STRING: ValueBlock.STRING,
        FeatureType.CATEGORICAL: ValueBlock.STRING,
    }
)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature. ``dims`` is the vector length for FLOAT32_VECTOR and 0 for scalars."""

    name: str
    dtype: FeatureType
    dims: int = 0
    categories: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))

    @property
    def width(self) -> int:
        """Number of values the feature occupies in its block."""
        return self.dims if self.dtype is FeatureType.FLOAT32_VECTOR else 1


@dataclass(frozen=True)
class FeatureGroupSpec:
    """Definition of a feature group version; ``features`` order defines the layout."""

    name: str
    entity_key: str
    entity_key_type: EntityKeyType
    event_time_column: str
    features: tuple[FeatureSpec, ...]
    ttl_seconds: float | None = None
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        # A read-only copy: the spec is shared between threads and must not change under them.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


def validate_spec(spec: FeatureGroupSpec) -> FeatureGroupSpec:
    """Check ``spec`` and return it normalised (scalar dims 0, categories as tuples).

    Raises:
        InvalidArgument: the message names the offending field, e.g. ``features[3].dims``.
    """
    _check_name("name", spec.name, GROUP_NAME_PATTERN, "[a-z][a-z0-9_]*")
    _check_name("entity_key", spec.entity_key, FEATURE_NAME_PATTERN, "[a-z_][a-z0-9_]*")
    _check_name(
        "event_time_column", spec.event_time_column, FEATURE_NAME_PATTERN, "[a-z_][a-z0-9_]*"
    )
    if spec.entity_key == spec.event_time_column:
        raise InvalidArgument(
            f"event_time_column '{spec.event_time_column}' must differ from entity_key"
        )
    if not isinstance(spec.entity_key_type, EntityKeyType):
        raise InvalidArgument(
            f"entity_key_type must be one of {[t.value for t in EntityKeyType]}, "
            f"got {spec.entity_key_type!r}"
        )
    if not spec.features:
        raise InvalidArgument(f"features: group '{spec.name}' needs at least one feature")
    if spec.ttl_seconds is not None and not spec.ttl_seconds > 0:
        raise InvalidArgument(f"ttl_seconds must be > 0 when set, got {spec.ttl_seconds}")
    reserved = {spec.entity_key: "entity_key", spec.event_time_column: "event_time_column"}
    seen: dict[str, int] = {}
    features = []
    for index, feature in enumerate(spec.features):
        features.append(_validated_feature(f"features[{index}]", feature))
        if feature.name in reserved:
            raise InvalidArgument(
                f"features[{index}].name '{feature.name}' collides with the group's "
                f"{reserved[feature.name]}"
            )
        if feature.name in seen:
            raise InvalidArgument(
                f"features[{index}].name '{feature.name}' duplicates features[{seen[feature.name]}]"
            )
        seen[feature.name] = index
    return replace(spec, features=tuple(features))


def _check_name(field_name: str, value: str, pattern: re.Pattern[str], shape: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field_name} is required")
    if len(value) > MAX_NAME_LENGTH or not pattern.fullmatch(value):
        raise InvalidArgument(
            f"{field_name} '{value}' is malformed: expected {shape}, "
            f"at most {MAX_NAME_LENGTH} characters"
        )


def _validated_feature(where: str, feature: FeatureSpec) -> FeatureSpec:
    _check_name(f"{where}.name", feature.name, FEATURE_NAME_PATTERN, "[a-z_][a-z0-9_]*")
    if not isinstance(feature.dtype, FeatureType):
        raise InvalidArgument(
            f"{where}.dtype of feature '{feature.name}' must be one of "
            f"{[t.value for t in FeatureType]}, got {feature.dtype!r}"
        )
    if feature.dtype is FeatureType.FLOAT32_VECTOR:
        if not 1 <= feature.dims <= MAX_VECTOR_DIMS:
            raise InvalidArgument(
                f"{where}.dims of vector feature '{feature.name}' must be in "
                f"1..{MAX_VECTOR_DIMS}, got {feature.dims}"
            )
    elif feature.dims not in (0, 1):
        raise InvalidArgument(
            f"{where}.dims of scalar feature '{feature.name}' ({feature.dtype.value}) must be "
            f"0 or 1, got {feature.dims}"
        )
    if feature.categories and feature.dtype is not FeatureType.CATEGORICAL:
        raise InvalidArgument(
            f"{where}.categories given for feature '{feature.name}' of type "
            f"{feature.dtype.value}; only categorical features take categories"
        )
    if len(set(feature.categories)) != len(feature.categories):
        raise InvalidArgument(f"{where}.categories of feature '{feature.name}' has duplicates")
    dims = feature.dims if feature.dtype is FeatureType.FLOAT32_VECTOR else 0
    return replace(feature, dims=dims)


@dataclass(frozen=True)
class FeatureSlot:
    """Where one feature's values sit: ``dims`` values from ``offset`` in ``block``."""

    name: str
    dtype: FeatureType
    dims: int
    block: ValueBlock
    offset: int

    @property
    def stop(self) -> int:
        return self.offset + self.dims


@dataclass(frozen=True)
class RecordLayout:
    """Packed layout of a record: slots in order plus each block's per-record width.

    ``group_name`` is only used to name the group in error messages.
    """

    slots: tuple[FeatureSlot, ...]
    float32_width: int
    float64_width: int
    int64_width: int
    string_width: int
    group_name: str = field(default="", compare=False)
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", tuple(self.slots))
        object.__setattr__(
            self, "_index", MappingProxyType({s.name: i for i, s in enumerate(self.slots)})
        )

    @classmethod
    def for_spec(cls, spec: FeatureGroupSpec) -> RecordLayout:
        """Pack ``spec.features`` in schema order (the spec should be validated first)."""
        return cls._pack(((f.name, f.dtype, f.width) for f in spec.features), group_name=spec.name)

    @classmethod
    def _pack(
        cls, features: Iterable[tuple[str, FeatureType, int]], *, group_name: str
    ) -> RecordLayout:
        widths = dict.fromkeys(ValueBlock, 0)
        slots = []
        for name, dtype, dims in features:
            block = BLOCK_OF_TYPE[dtype]
            slots.append(FeatureSlot(name, dtype, dims, block, widths[block]))
            widths[block] += dims
        return cls(
            tuple(slots),
            widths[ValueBlock.FLOAT32],
            widths[ValueBlock.FLOAT64],
            widths[ValueBlock.INT64],
            widths[ValueBlock.STRING],
            group_name=group_name,
        )

    def width(self, block: ValueBlock) -> int:
        """Per-record number of values in ``block``."""
        return {
            ValueBlock.FLOAT32: self.float32_width,
            ValueBlock.FLOAT64: self.float64_width,
            ValueBlock.INT64: self.int64_width,
            ValueBlock.STRING: self.string_width,
        }[block]

    def slots_in(self, block: ValueBlock) -> tuple[FeatureSlot, ...]:
        """Slots packed into ``block``, by increasing offset."""
        return tuple(s for s in self.slots if s.block is block)

    def slot(self, name: str) -> FeatureSlot:
        """The slot of feature ``name``.

        Raises:
            NotFound: the group has no such feature (the message names both).
        """
        try:
            return self.slots[self._index[name]]
        except KeyError:
            raise NotFound(
                f"feature '{name}' not found in feature group '{self.group_name}'",
                reason="FEATURE_NOT_FOUND",
                metadata={"feature": name, "feature_group": self.group_name},
            ) from None

    def subset(self, names: Iterable[str]) -> LayoutSubset:
        """Project onto ``names`` in the requested order; no names means every feature.

        Raises:
            InvalidArgument: a name is requested twice.
            NotFound: a name is not a feature of the group.
        """
        names = list(names)
        if not names:
            return LayoutSubset.identity(self)
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise InvalidArgument(f"feature_names: '{name}' is requested more than once")
            seen.add(name)
        picked = [self.slot(name) for name in names]
        if len(picked) == len(self.slots) and all(
            a is b for a, b in zip(picked, self.slots, strict=True)
        ):
            return LayoutSubset.identity(self)
        sub = RecordLayout._pack(
            ((s.name, s.dtype, s.dims) for s in picked), group_name=self.group_name
        )
        return LayoutSubset(
            layout=sub,
            float32_index=_gather_index(picked, ValueBlock.FLOAT32),
            float64_index=_gather_index(picked, ValueBlock.FLOAT64),
            int64_index=_gather_index(picked, ValueBlock.INT64),
            string_index=_gather_index(picked, ValueBlock.STRING),
            slot_index=np.array([self._index[n] for n in names], dtype=np.intp),
        )


def _gather_index(picked: list[FeatureSlot], block: ValueBlock) -> np.ndarray:
    runs = [np.arange(s.offset, s.stop, dtype=np.intp) for s in picked if s.block is block]
    return np.concatenate(runs) if runs else np.empty(0, dtype=np.intp)


@dataclass(frozen=True, eq=False)
class LayoutSubset:
    """A projection of a full layout onto some features.

    ``layout`` is the projected layout (offsets renumbered in requested order). Each
    ``*_index`` array lists, for every value of the projected block, its position in the
    full-width block, so ``full_block[:, float32_index]`` gathers the subset; ``None`` means
    the block is taken whole (no copy needed). ``slot_index`` maps projected slots to full
    slots (for null masks).
    """

    layout: RecordLayout
    float32_index: np.ndarray | None
    float64_index: np.ndarray | None
    int64_index: np.ndarray | None
    string_index: np.ndarray | None
    slot_index: np.ndarray | None

    @classmethod
    def identity(cls, layout: RecordLayout) -> LayoutSubset:
        return cls(layout, None, None, None, None, None)

    @property
    def is_identity(self) -> bool:
        return self.slot_index is None


def categories_of(spec: FeatureGroupSpec) -> Mapping[str, frozenset[str]]:
    """Closed vocabularies of the spec's categorical features (open ones are left out)."""
    return MappingProxyType(
        {
            f.name: frozenset(f.categories)
            for f in spec.features
            if f.dtype is FeatureType.CATEGORICAL and f.categories
        }
    )

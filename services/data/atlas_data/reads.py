"""Online reads: the latest record of up to N entities, all features or a named subset."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from atlas_core.errors import InvalidArgument
from atlas_data.feature_groups import FeatureGroup, FeatureGroupCatalog
from atlas_data.online import OnlineRows, OnlineStore
from atlas_data.schema import EntityKeyType, LayoutSubset


class OnlineReader:
    """Thread-safe; layouts and subsets are cached per group version."""

    def __init__(
        self,
        catalog: FeatureGroupCatalog,
        online: OnlineStore,
        *,
        max_entities: int = 1000,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._catalog = catalog
        self._online = online
        self._max = max_entities
        self._clock_us = clock_us
        self._subsets: dict[tuple[str, tuple[str, ...]], LayoutSubset] = {}

    def _subset(self, group: FeatureGroup, names: Sequence[str]) -> LayoutSubset | None:
        if not names:
            return None
        key = (group.store_key, tuple(names))
        subset = self._subsets.get(key)
        if subset is None:
            subset = self._subsets[key] = group.layout.subset(names)
        return subset

    def get(
        self,
        name: str,
        version: int,
        keys: Sequence[int] | Sequence[str],
        feature_names: Sequence[str] = (),
    ) -> tuple[FeatureGroup, OnlineRows]:
        """Raises InvalidArgument (no keys, too many, wrong key type, duplicate feature
        names), NotFound (group or feature, named), Unavailable (store down)."""
        if not keys:
            raise InvalidArgument(
                f"entity_keys is empty: pass 1 to {self._max} keys", reason="NO_ENTITIES"
            )
        if len(keys) > self._max:
            raise InvalidArgument(
                f"{len(keys)} entity keys requested; at most {self._max} per call -- split "
                "the request",
                reason="TOO_MANY_ENTITIES",
                metadata={"limit": str(self._max)},
            )
        group = self._catalog.get(name, version)
        wants_int = group.spec.entity_key_type is EntityKeyType.INT64
        if wants_int != isinstance(keys[0], int):
            raise InvalidArgument(
                f"feature group '{name}' has {group.spec.entity_key_type.value} entity keys; "
                f"send {'int64_keys' if wants_int else 'string_keys'}",
                reason="BAD_KEY_TYPE",
            )
        subset = self._subset(group, feature_names)
        min_time = None
        if group.spec.ttl_seconds is not None:
            min_time = self._clock_us() - int(group.spec.ttl_seconds * 1_000_000)
        rows = self._online.read_rows(
            group.store_key, keys, group.layout, subset, min_event_time_us=min_time
        )
        return group, rows

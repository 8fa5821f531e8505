"""Online feature lookup for entity-id requests: the endpoint's feature groups are read from
the data service within the lookup deadline; a missing entity or a failed lookup applies the
endpoint's fallback policy (fail, training defaults, or missing values)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from atlas.data.v1 import data_service_pb2 as data_pb
from atlas_core.clients.data import DataClient, Features
from atlas_core.errors import AtlasError, FailedPrecondition, NotFound, Unavailable
from atlas_serving.domain import FallbackPolicy, FeatureLookup

DEFAULT_TIMEOUT_S = 0.05

# Data-service feature types (the data client's vocabulary) as the dtype names the bundle
# schema understands.
FEATURE_TYPE_NAMES = {
    data_pb.FEATURE_TYPE_FLOAT32: "float32",
    data_pb.FEATURE_TYPE_FLOAT32_VECTOR: "float32_vector",
    data_pb.FEATURE_TYPE_FLOAT64: "float64",
    data_pb.FEATURE_TYPE_INT64: "int64",
    data_pb.FEATURE_TYPE_STRING: "string",
    data_pb.FEATURE_TYPE_CATEGORICAL: "categorical",
    data_pb.FEATURE_TYPE_BOOL: "bool",
}


def lookup_timeout(lookup: FeatureLookup) -> float:
    return lookup.timeout_s or DEFAULT_TIMEOUT_S


def _sources(
    lookup: FeatureLookup, names: Sequence[str], group_features: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, str]]:
    """model input -> (group, feature); explicit mapping first, then same-name features."""
    out: dict[str, tuple[str, str]] = {}
    for name in names:
        mapped = lookup.feature_mapping.get(name)
        if mapped:
            group, _, feature = mapped.partition(".")
            out[name] = (group, feature)
            continue
        for ref in lookup.feature_groups:
            if name in group_features.get(ref.name, ()):
                out[name] = (ref.name, name)
                break
    return out


def check_lookup_schema(client: DataClient | None, lookup: FeatureLookup, model: Any) -> None:
    """Deploy-time check: the groups exist and cover the model's inputs with compatible types.

    Raises NotFound (unknown group), FailedPrecondition (schema mismatch, no data service).
    """
    if not lookup.feature_groups:
        return
    if client is None:
        raise FailedPrecondition(
            "the endpoint uses feature lookup but this serving replica "
            "has no data service configured (data.target)",
            reason="NO_DATA_SERVICE",
        )
    types: dict[tuple[str, str], str] = {}
    group_features: dict[str, list[str]] = {}
    for ref in lookup.feature_groups:
        group = client.get_feature_group(ref.name, ref.version)
        group_features[ref.name] = [f.name for f in group.spec.features]
        for f in group.spec.features:
            types[(ref.name, f.name)] = FEATURE_TYPE_NAMES.get(f.dtype, "unknown")
    sources = _sources(lookup, model.names, group_features)
    available = {name: types[src] for name, src in sources.items() if src in types}
    model.predictor.check_schema_compatible(available)


class FeatureFetcher:
    """Reads online features for a batch of entity ids (blocking client run in threads)."""

    def __init__(self, client: DataClient | None) -> None:
        self.client = client
        self._layouts: dict[str, list[str]] = {}

    async def rows(
        self, lookup: FeatureLookup, model: Any, keys: Sequence[Any]
    ) -> list[tuple[dict[str, Any], bool]]:
        """(features, fallback_used) per entity key (an int or a string). Raises NotFound /
        Unavailable under the FAIL policy; never waits past the lookup deadline."""
        fallback = lookup.fallback or FallbackPolicy.FAIL
        try:
            if self.client is None:
                raise Unavailable(
                    "no data service is configured for feature lookup", reason="NO_DATA_SERVICE"
                )
            fetched = await asyncio.wait_for(
                self._fetch(lookup, model, keys), lookup_timeout(lookup)
            )
        except (TimeoutError, AtlasError) as exc:
            if fallback == FallbackPolicy.FAIL:
                if isinstance(exc, AtlasError) and not isinstance(exc, Unavailable):
                    raise Unavailable(
                        f"feature lookup failed: {exc.message}", reason="FEATURE_LOOKUP_FAILED"
                    ) from None
                raise Unavailable(
                    "feature lookup from the data service did not answer "
                    f"within {lookup_timeout(lookup) * 1000:.0f} ms",
                    reason="FEATURE_LOOKUP_UNAVAILABLE",
                ) from None
            return [(_fill({}, model, fallback), True) for _ in keys]
        out = []
        for key, (values, complete) in zip(keys, fetched, strict=True):
            if complete:
                out.append((values, False))
            elif fallback == FallbackPolicy.FAIL:
                raise NotFound(
                    f"entity {key!r} has no online features for this endpoint",
                    reason="ENTITY_NOT_FOUND",
                    metadata={"entity": str(key)},
                )
            else:
                out.append((_fill(values, model, fallback), True))
        return out

    async def _fetch(
        self, lookup: FeatureLookup, model: Any, keys: Sequence[Any]
    ) -> list[tuple[dict[str, Any], bool]]:
        client = self.client
        assert client is not None
        sources = _sources(lookup, model.names, await self._group_features(lookup))
        by_group: dict[str, list[tuple[str, str]]] = {}
        for name, (group, feature) in sources.items():
            by_group.setdefault(group, []).append((name, feature))
        results: list[dict[str, Any]] = [{} for _ in keys]
        found = [True] * len(keys)
        calls = [
            asyncio.to_thread(client.get_features, group, keys, [f for _, f in pairs])
            for group, pairs in by_group.items()
        ]
        for (_group, pairs), features in zip(
            by_group.items(), await asyncio.gather(*calls), strict=True
        ):
            for i in range(len(keys)):
                if not features.found[i]:
                    found[i] = False
                    continue
                for name, feature in pairs:
                    results[i][name] = _value(features, i, feature)
        return [(r, f and len(r) == len(model.names)) for r, f in zip(results, found, strict=True)]

    async def _group_features(self, lookup: FeatureLookup) -> dict[str, list[str]]:
        assert self.client is not None
        for ref in lookup.feature_groups:
            if ref.name not in self._layouts:
                group = await asyncio.to_thread(
                    self.client.get_feature_group, ref.name, ref.version
                )
                self._layouts[ref.name] = [f.name for f in group.spec.features]
        return self._layouts


def _value(features: Features, row: int, name: str) -> Any:
    for slot in features.layout.slots:
        if slot.name != name:
            continue
        if slot.block == data_pb.VALUE_BLOCK_FLOAT32:
            return float(features.float32[row, slot.offset])
        if slot.block == data_pb.VALUE_BLOCK_FLOAT64:
            return float(features.float64[row, slot.offset])
        if slot.block == data_pb.VALUE_BLOCK_INT64:
            return int(features.int64[row, slot.offset])
        width = features.layout.string_width
        return features.strings[row * width + slot.offset]
    return None


def _fill(values: dict[str, Any], model: Any, fallback: FallbackPolicy) -> dict[str, Any]:
    out = dict(values)
    for name in model.names:
        if out.get(name) is None or (isinstance(out[name], float) and math.isnan(out[name])):
            out[name] = model.defaults.get(name) if fallback == FallbackPolicy.DEFAULTS else None
    return out

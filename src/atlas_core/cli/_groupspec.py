"""Feature-group specs as people write them (YAML or JSON, friendly type names), read into
``FeatureGroupSpec``::

    name: salaries
    entity_key: id            # entity_key_type: int (default) or string
    event_time_column: ts
    features:
      salary: float
      rank: category          # or {type: category, categories: [a, b]}
      embedding: vector[64]

``features`` may also be a list of ``{name, type}`` mappings; the proto's own JSON form
(``dtype: FEATURE_TYPE_FLOAT32``) is accepted too.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from google.protobuf import json_format

from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.errors import InvalidArgument

TYPES = {
    "float": pb.FEATURE_TYPE_FLOAT32,
    "float32": pb.FEATURE_TYPE_FLOAT32,
    "float64": pb.FEATURE_TYPE_FLOAT64,
    "double": pb.FEATURE_TYPE_FLOAT64,
    "int": pb.FEATURE_TYPE_INT64,
    "int64": pb.FEATURE_TYPE_INT64,
    "string": pb.FEATURE_TYPE_STRING,
    "str": pb.FEATURE_TYPE_STRING,
    "category": pb.FEATURE_TYPE_CATEGORICAL,
    "categorical": pb.FEATURE_TYPE_CATEGORICAL,
    "bool": pb.FEATURE_TYPE_BOOL,
}
KEY_TYPES = {"int": pb.ENTITY_KEY_TYPE_INT64, "string": pb.ENTITY_KEY_TYPE_STRING}
KEY_TYPES |= {"int64": pb.ENTITY_KEY_TYPE_INT64, "str": pb.ENTITY_KEY_TYPE_STRING}
_VECTOR = re.compile(r"vector\[(\d+)\]")
_TYPE_HELP = "float, int, string, category, bool, float64 or vector[N]"


def parse_group_spec(text: str) -> pb.FeatureGroupSpec:
    """The spec in ``text`` (YAML, hence also JSON). Raises InvalidArgument naming the fix."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise InvalidArgument("a feature-group spec is a mapping with name, entity_key, features")
    raw = dict(raw)
    features = raw.pop("features", [])
    if isinstance(features, dict):
        features = [{"name": k, **_typed(v)} for k, v in features.items()]
    if not isinstance(features, list):
        raise InvalidArgument("features: give a mapping name: type, or a list of {name, type}")
    key_type = raw.get("entity_key_type", "int")
    if isinstance(key_type, str) and key_type.lower() in KEY_TYPES:
        raw["entity_key_type"] = KEY_TYPES[key_type.lower()]
    spec = json_format.ParseDict(raw, pb.FeatureGroupSpec())
    spec.features.extend(_feature(f) for f in features)
    return spec


def _typed(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"type": value}


def _feature(raw: Any) -> pb.FeatureSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise InvalidArgument(f"feature {raw!r}: give a mapping with name and type")
    raw = dict(raw)
    name = str(raw.pop("name"))
    type_name = str(raw.pop("type", raw.pop("dtype", ""))).strip()
    feature = pb.FeatureSpec(name=name, description=str(raw.pop("description", "")))
    vector = _VECTOR.fullmatch(type_name.lower().replace(" ", ""))
    if vector:
        feature.dtype, feature.dims = pb.FEATURE_TYPE_FLOAT32_VECTOR, int(vector.group(1))
    elif type_name.lower() in TYPES:
        feature.dtype = TYPES[type_name.lower()]
    elif type_name in pb.FeatureType.keys():
        feature.dtype = pb.FeatureType.Value(type_name)
        feature.dims = int(raw.pop("dims", 0))
    else:
        raise InvalidArgument(
            f"feature {name!r}: unknown type {type_name!r}; use one of {_TYPE_HELP}"
        )
    feature.categories.extend(str(c) for c in raw.pop("categories", []))
    if raw:
        raise InvalidArgument(f"feature {name!r}: unknown keys {sorted(raw)}")
    return feature

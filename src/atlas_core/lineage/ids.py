"""Lineage ids: ``"<kind>:<key>"``, where the kind names the service that owns the node.

The formats are listed in docs/architecture.md (section Lineage). Keys are the ids each
service already uses; a versioned artifact appends ``@<version>`` and a trial ``#<number>``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from atlas.common.v1 import common_pb2
from atlas_core.errors import InvalidArgument
from atlas_core.reasons import SharedReason

# kind -> owning service; "" marks leaves owned by no service (objects in the store).
OWNER: dict[str, str] = {
    "feature_group": "data",
    "dataset": "data",
    "data_job": "data",
    "training_job": "trainer",
    "trial": "trainer",
    "model_version": "serving",
    "endpoint": "serving",
    "prediction": "serving",
    "serving_job": "serving",
    "labeling_project": "labeling",
    "item": "labeling",
    "label_export": "labeling",
    "labeling_job": "labeling",
    "graph": "graph",
    "partitioning": "graph",
    "graph_job": "graph",
    "artifact": "",
}
JOB_KIND = {
    "data": "data_job",
    "trainer": "training_job",
    "serving": "serving_job",
    "labeling": "labeling_job",
    "graph": "graph_job",
}
# Bare ids the walker recognises without a kind (service-made ids with a typed prefix).
_BARE_PREFIXES = {"prj-": "labeling_project", "itm-": "item", "g_": "graph", "p_": "partitioning"}
# Prediction ids start with their creation time in ms (12 hex digits): accept a bare one
# whose time is after 2020-01-01 and not in the future by more than a day.
_PREDICTION_EPOCH_MS = 1_577_836_800_000


@dataclass(frozen=True)
class LineageId:
    kind: str
    key: str

    @property
    def service(self) -> str:
        return OWNER[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


def _bad(text: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"lineage id {text!r}: {why}; use '<kind>:<key>' with kind one of "
        f"{', '.join(sorted(OWNER))}",
        reason=SharedReason.BAD_LINEAGE_ID,
        metadata={"id": text[:200]},
    )


def make(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def parse(text: str) -> LineageId:
    """A typed id ``kind:key``. Raises InvalidArgument (BAD_LINEAGE_ID)."""
    kind, sep, key = text.partition(":")
    if not sep or not key:
        raise _bad(text, "no kind")
    if kind not in OWNER:
        raise _bad(text, f"unknown kind {kind!r}")
    return LineageId(kind, key)


def recognise(text: str) -> LineageId:
    """A typed id, or a bare id whose own form names its kind (``prj-…``, ``itm-…``, ``g_…``,
    ``p_…``, a 32-hex prediction id)."""
    text = text.strip()
    if ":" in text:
        return parse(text)
    for prefix, kind in _BARE_PREFIXES.items():
        if text.startswith(prefix):
            return LineageId(kind, text)
    if _looks_like_prediction(text):
        return LineageId("prediction", text)
    raise _bad(text, "a bare id is ambiguous")


def _looks_like_prediction(text: str) -> bool:
    if len(text) != 32:
        return False
    try:
        ms = int(text[:12], 16)
        int(text, 16)
    except ValueError:
        return False
    return _PREDICTION_EPOCH_MS <= ms <= time.time() * 1000 + 86_400_000


def versioned(lid: LineageId) -> tuple[str, str]:
    """Split ``name@version`` (the version may be an alias where the kind allows one)."""
    name, sep, version = lid.key.rpartition("@")
    if not sep or not name or not version:
        raise _bad(str(lid), "the key needs '<name>@<version>'")
    return name, version


def version_number(lid: LineageId) -> tuple[str, int]:
    name, version = versioned(lid)
    if not version.isdigit() or int(version) < 1:
        raise _bad(str(lid), "the version must be a number >= 1")
    return name, int(version)


def trial(lid: LineageId) -> tuple[str, int]:
    """Split ``<job id>#<trial number>`` (-2 is the final ensemble)."""
    job_id, sep, number = lid.key.rpartition("#")
    if not sep or not job_id or not number.lstrip("-").isdigit():
        raise _bad(str(lid), "the key needs '<job id>#<trial number>'")
    return job_id, int(number)


def job(service: str, job_id: str) -> str:
    return make(JOB_KIND[service], job_id)


def of_parent(kind: str, ref: Mapping[str, Any]) -> str:
    """The lineage id of a typed parent reference (an ``atlas.common.v1.LineageParent`` oneof
    name and its fields, as proto JSON or plain values)."""
    if kind == "dataset":
        return make("dataset", f"{ref['dataset_id']}@{int(ref.get('version') or 0)}")
    if kind == "feature_group":
        return make("feature_group", f"{ref['name']}@{int(ref.get('version') or 0)}")
    if kind == "model":
        selector = ref.get("alias") or int(ref.get("version") or 0)
        return make("model_version", f"{ref['model_name']}@{selector}")
    if kind == "label_set":
        if ref.get("export_id"):
            return make("label_export", str(ref["export_id"]))
        return make("labeling_project", str(ref["project_id"]))
    if kind == "trial":
        number = int(ref.get("trial_number") or 0)
        if number == -1:
            return make("training_job", str(ref["job_id"]))
        return make("trial", f"{ref['job_id']}#{number}")
    if kind == "graph":
        if ref.get("partitioning_id"):
            return make("partitioning", str(ref["partitioning_id"]))
        return make("graph", str(ref["graph_id"]))
    if kind == "endpoint":
        return make("endpoint", str(ref["endpoint_name"]))
    if kind == "artifact":
        return make("artifact", str(ref.get("uri", "")))
    raise ValueError(f"unknown lineage parent kind {kind!r}")


def of_parent_pb(parent: common_pb2.LineageParent) -> str:
    kind = parent.WhichOneof("ref") or ""
    fields = json_format.MessageToDict(getattr(parent, kind), preserving_proto_field_name=True)
    return of_parent(kind, fields)

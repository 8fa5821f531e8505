"""How stored records are encoded (a codec per record type, given by the runtime: the
metadata DB holds canonical proto JSON, see convert.py), and the clock the stores use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from atlas_serving.domain import (
    Alert,
    BundleRef,
    Deployment,
    DriftReport,
    EndpointSpec,
    ModelVersion,
    MonitoringSpec,
)

T = TypeVar("T")


class Codec(Protocol[T]):
    """A record type to and from its stored form: text (DB columns) or a JSON-able dict (job
    specs and results)."""

    def dumps(self, value: T) -> str: ...

    def loads(self, raw: str) -> T: ...

    def to_dict(self, value: T) -> dict[str, Any]: ...

    def from_dict(self, raw: Mapping[str, Any]) -> T: ...


@dataclass(frozen=True)
class Codecs:
    """The stored form of every record type (convert.CODECS: canonical proto JSON)."""

    endpoint_spec: Codec[EndpointSpec]
    model_version: Codec[ModelVersion]
    deployment: Codec[Deployment]
    alert: Codec[Alert]
    monitoring_spec: Codec[MonitoringSpec]
    drift_report: Codec[DriftReport]
    bundle: Codec[BundleRef]


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_us() -> int:
    return int(now().timestamp() * 1_000_000)

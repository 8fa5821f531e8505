"""Feature group catalog: versions of each group's schema in the metadata DB."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, delete, func, select

from atlas_core.db import write_transaction
from atlas_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atlas_data.schema import (
    EntityKeyType,
    FeatureGroupSpec,
    FeatureSpec,
    FeatureType,
    RecordLayout,
    validate_spec,
)
from atlas_data.tables import feature_groups


@dataclass(frozen=True)
class FeatureGroup:
    spec: FeatureGroupSpec
    version: int
    layout: RecordLayout
    created_at: datetime

    @property
    def store_key(self) -> str:
        """Name of this group's online keyspace: one per group, shared by its versions
        whose layouts agree; a new version with a different layout gets its own."""
        return f"{self.spec.name}@{self.version}"


def spec_to_dict(spec: FeatureGroupSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "entity_key": spec.entity_key,
        "entity_key_type": spec.entity_key_type.value,
        "event_time_column": spec.event_time_column,
        "features": [
            {
                "name": f.name,
                "dtype": f.dtype.value,
                "dims": f.dims,
                "categories": list(f.categories),
                "description": f.description,
            }
            for f in spec.features
        ],
        "ttl_seconds": spec.ttl_seconds,
        "description": spec.description,
        "labels": dict(spec.labels),
    }


def spec_from_dict(raw: dict[str, Any]) -> FeatureGroupSpec:
    return FeatureGroupSpec(
        name=raw["name"],
        entity_key=raw["entity_key"],
        entity_key_type=EntityKeyType(raw["entity_key_type"]),
        event_time_column=raw["event_time_column"],
        features=tuple(
            FeatureSpec(
                f["name"],
                FeatureType(f["dtype"]),
                f["dims"],
                tuple(f["categories"]),
                f["description"],
            )
            for f in raw["features"]
        ),
        ttl_seconds=raw["ttl_seconds"],
        description=raw["description"],
        labels=raw["labels"],
    )


def _row_to_group(row: Any) -> FeatureGroup:
    spec = spec_from_dict(json.loads(row.spec))
    created = (
        row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
    )
    return FeatureGroup(spec, row.version, RecordLayout.for_spec(spec), created)


class FeatureGroupCatalog:
    """Create/read/list/delete feature group versions. Thread-safe (one DB transaction per
    call); layouts are cached because every online read needs one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[tuple[str, int], FeatureGroup] = {}
        self._latest: dict[str, int] = {}

    def create(self, spec: FeatureGroupSpec, *, new_version: bool = False) -> FeatureGroup:
        """Raises InvalidArgument (bad spec), AlreadyExists (exists and not new_version),
        FailedPrecondition (a new version changes the entity key type)."""
        spec = validate_spec(spec)
        now = datetime.now(timezone.utc)
        with write_transaction(self._engine) as conn:
            latest = conn.execute(
                select(feature_groups)
                .where(feature_groups.c.name == spec.name)
                .order_by(feature_groups.c.version.desc())
                .limit(1)
            ).first()
            if latest is not None and not new_version:
                raise AlreadyExists(
                    f"feature group '{spec.name}' already exists (version {latest.version}); "
                    "set new_version to create version "
                    f"{latest.version + 1}",
                    reason="FEATURE_GROUP_EXISTS",
                    metadata={"feature_group": spec.name},
                )
            version = 1
            if latest is not None:
                old = spec_from_dict(json.loads(latest.spec))
                if old.entity_key_type != spec.entity_key_type:
                    raise FailedPrecondition(
                        f"feature group '{spec.name}': a new version cannot change the entity "
                        f"key type from {old.entity_key_type.value} to "
                        f"{spec.entity_key_type.value}",
                        reason="ENTITY_KEY_TYPE_CHANGED",
                    )
                version = latest.version + 1
            conn.execute(
                feature_groups.insert().values(
                    name=spec.name,
                    version=version,
                    spec=json.dumps(spec_to_dict(spec)),
                    created_at=now,
                )
            )
        self._latest.pop(spec.name, None)
        return self.get(spec.name, version)

    def get(self, name: str, version: int = 0) -> FeatureGroup:
        """Version 0 means latest. Raises InvalidArgument (empty name), NotFound."""
        if not name:
            raise InvalidArgument("feature group name is empty", reason="EMPTY_NAME")
        if version == 0 and name in self._latest:
            version = self._latest[name]
        cached = self._cache.get((name, version))
        if cached is not None:
            return cached
        query = select(feature_groups).where(feature_groups.c.name == name)
        query = (
            query.where(feature_groups.c.version == version)
            if version
            else query.order_by(feature_groups.c.version.desc()).limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            what = f"feature group '{name}'" + (f" version {version}" if version else "")
            raise NotFound(
                f"{what} does not exist",
                reason="FEATURE_GROUP_NOT_FOUND",
                metadata={"feature_group": name},
            )
        group = _row_to_group(row)
        self._cache[(name, group.version)] = group
        if version == 0:
            self._latest[name] = group.version
        return group

    def list(
        self,
        *,
        name_prefix: str = "",
        all_versions: bool = False,
        labels: dict[str, str] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[FeatureGroup], int]:
        """Groups ordered by name then version; returns (page, total matching)."""
        query = select(feature_groups).order_by(feature_groups.c.name, feature_groups.c.version)
        if name_prefix:
            query = query.where(feature_groups.c.name.startswith(name_prefix, autoescape=True))
        if not all_versions:
            newest = (
                select(feature_groups.c.name, func.max(feature_groups.c.version).label("v"))
                .group_by(feature_groups.c.name)
                .subquery()
            )
            query = query.join(
                newest,
                (newest.c.name == feature_groups.c.name) & (newest.c.v == feature_groups.c.version),
            )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        groups = [_row_to_group(r) for r in rows]
        if labels:
            groups = [
                g for g in groups if all(g.spec.labels.get(k) == v for k, v in labels.items())
            ]
        return groups[offset : offset + limit], len(groups)

    def versions(self, name: str) -> builtins.list[FeatureGroup]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(feature_groups)
                .where(feature_groups.c.name == name)
                .order_by(feature_groups.c.version)
            ).all()
        return [_row_to_group(r) for r in rows]

    def delete(self, name: str) -> builtins.list[FeatureGroup]:
        """Delete every version; returns what was deleted. Raises NotFound."""
        doomed = self.versions(name)
        if not doomed:
            raise NotFound(
                f"feature group '{name}' does not exist",
                reason="FEATURE_GROUP_NOT_FOUND",
                metadata={"feature_group": name},
            )
        with write_transaction(self._engine) as conn:
            conn.execute(delete(feature_groups).where(feature_groups.c.name == name))
        self._latest.pop(name, None)
        for group in doomed:
            self._cache.pop((name, group.version), None)
        return doomed

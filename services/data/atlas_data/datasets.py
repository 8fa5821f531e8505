"""Dataset catalog: immutable, versioned datasets (Parquet artifacts) with lineage.

A version is registered only after its data is published, inside one transaction that picks
the next version number, so a failed or cancelled build never leaves a partial dataset.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, delete, func, select

from atlas_core.db import write_transaction
from atlas_core.errors import InvalidArgument, NotFound
from atlas_core.storage import ArtifactRef
from atlas_data.tables import datasets

_ID_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def dataset_id_for(name: str) -> str:
    """Stable id from a display name: lowercase, safe for object keys."""
    ident = _ID_UNSAFE.sub("-", name.strip().lower()).strip("-.")
    if not ident:
        raise InvalidArgument(
            f"dataset name {name!r} has no usable characters", reason="INVALID_DATASET_NAME"
        )
    return ident[:128]


@dataclass(frozen=True)
class LineageParent:
    """``kind`` is dataset | feature_group | artifact | label_set; ``ref`` its identifying
    fields (dataset_id+version, name+version, uri+sha256, project_id+export_id)."""

    role: str
    kind: str
    ref: dict[str, Any]


@dataclass(frozen=True)
class DatasetRecord:
    dataset_id: str
    version: int
    name: str
    artifacts: tuple[dict[str, Any], ...]  # {uri, key, sha256, size}
    schema: tuple[dict[str, Any], ...]  # {name, type, dims, nullable}
    row_count: int
    entity_column: str = ""
    timestamp_column: str = ""
    label_column: str = ""
    label_distribution: dict[str, Any] | None = None
    meta_features: dict[str, Any] | None = None
    parents: tuple[LineageParent, ...] = ()
    operation: str = ""
    produced_by_job: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    def artifact_refs(self) -> list[ArtifactRef]:
        return [ArtifactRef(a["uri"], a["key"], a["sha256"], a["size"]) for a in self.artifacts]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DatasetRecord:
        raw = json.loads(text)
        raw["artifacts"] = tuple(raw["artifacts"])
        raw["schema"] = tuple(raw["schema"])
        raw["parents"] = tuple(LineageParent(**p) for p in raw["parents"])
        return cls(**raw)


def artifact_dict(ref: ArtifactRef) -> dict[str, Any]:
    return {"uri": ref.uri, "key": ref.key, "sha256": ref.sha256, "size": ref.size}


class DatasetCatalog:
    """Thread- and process-safe (each call is one DB transaction)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def register(self, record: DatasetRecord) -> DatasetRecord:
        """Store ``record`` as the next version of its dataset id; returns it with the
        version and creation time filled in."""
        now = datetime.now(timezone.utc)
        with write_transaction(self._engine) as conn:
            latest = conn.execute(
                select(func.max(datasets.c.version)).where(
                    datasets.c.dataset_id == record.dataset_id
                )
            ).scalar()
            version = int(latest or 0) + 1
            stored = DatasetRecord(
                **{
                    **asdict(record),
                    "version": version,
                    "created_at": now.isoformat(),
                    "parents": record.parents,
                }
            )
            conn.execute(
                datasets.insert().values(
                    dataset_id=record.dataset_id,
                    version=version,
                    name=record.name,
                    body=stored.to_json(),
                    created_at=now,
                )
            )
        return stored

    def get(self, dataset_id: str, version: int = 0) -> DatasetRecord:
        """Version 0 = latest. Raises InvalidArgument (empty id) or NotFound."""
        if not dataset_id:
            raise InvalidArgument("dataset id is empty", reason="EMPTY_DATASET_ID")
        query = select(datasets.c.body).where(datasets.c.dataset_id == dataset_id)
        query = (
            query.where(datasets.c.version == version)
            if version
            else query.order_by(datasets.c.version.desc()).limit(1)
        )
        with self._engine.connect() as conn:
            body = conn.execute(query).scalar()
        if body is None:
            what = f"dataset '{dataset_id}'" + (f" version {version}" if version else "")
            raise NotFound(
                f"{what} does not exist",
                reason="DATASET_NOT_FOUND",
                metadata={"dataset_id": dataset_id},
            )
        return DatasetRecord.from_json(body)

    def update_meta_features(self, record: DatasetRecord, meta: dict[str, Any]) -> DatasetRecord:
        updated = DatasetRecord(
            **{**asdict(record), "meta_features": meta, "parents": record.parents}
        )
        with write_transaction(self._engine) as conn:
            conn.execute(
                datasets.update()
                .where(
                    (datasets.c.dataset_id == record.dataset_id)
                    & (datasets.c.version == record.version)
                )
                .values(body=updated.to_json())
            )
        return updated

    def list(
        self,
        *,
        dataset_id: str = "",
        name_prefix: str = "",
        parent: tuple[str, int] | None = None,
        labels: dict[str, str] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[DatasetRecord], int]:
        """Latest version of each dataset, or every version of ``dataset_id``; returns (page,
        total matching)."""
        query = select(datasets.c.body).order_by(datasets.c.dataset_id, datasets.c.version)
        if dataset_id:
            query = query.where(datasets.c.dataset_id == dataset_id)
        else:
            newest = (
                select(datasets.c.dataset_id, func.max(datasets.c.version).label("v"))
                .group_by(datasets.c.dataset_id)
                .subquery()
            )
            query = query.join(
                newest,
                (newest.c.dataset_id == datasets.c.dataset_id) & (newest.c.v == datasets.c.version),
            )
        with self._engine.connect() as conn:
            records = [DatasetRecord.from_json(b) for b in conn.execute(query).scalars()]
        if dataset_id and not records:
            raise NotFound(f"dataset '{dataset_id}' does not exist", reason="DATASET_NOT_FOUND")
        if name_prefix:
            records = [r for r in records if r.name.startswith(name_prefix)]
        if parent is not None:
            records = [
                r
                for r in records
                if any(
                    p.kind == "dataset"
                    and p.ref.get("dataset_id") == parent[0]
                    and (not parent[1] or p.ref.get("version") == parent[1])
                    for p in r.parents
                )
            ]
        if labels:
            records = [r for r in records if all(r.labels.get(k) == v for k, v in labels.items())]
        return records[offset : offset + limit], len(records)

    def delete(self, dataset_id: str, version: int = 0) -> builtins.list[DatasetRecord]:
        """Delete one version (or all with version 0); returns the deleted records so the
        caller can remove their data. Raises NotFound."""
        if version:
            doomed = [self.get(dataset_id, version)]
        else:
            doomed, _ = self.list(dataset_id=dataset_id, limit=1_000_000)
        cond = datasets.c.dataset_id == dataset_id
        if version:
            cond = cond & (datasets.c.version == version)
        with write_transaction(self._engine) as conn:
            conn.execute(delete(datasets).where(cond))
        return doomed

"""Model registry: versions of named models, each a verified bundle, plus aliases
("production", "candidate") that deployments resolve instead of stages."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from atlas_core.db import fetch_page, write_transaction
from atlas_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from atlas_core.storage import ArtifactStore
from atlas_serving.bundle_access import BundleLoader, resolve_artifact
from atlas_serving.control.schema_map import lineage_from_manifest, table_schema
from atlas_serving.domain import BundleRef, Model, ModelRef, ModelVersion, Registration
from atlas_serving.records import Codec, now
from atlas_serving.tables import aliases, model_versions, models

NAME = re.compile(r"^[a-z][a-z0-9-]{0,127}$")


def check_name(value: str, what: str) -> str:
    if not NAME.match(value or ""):
        raise InvalidArgument(
            f"{what} {value!r} must match [a-z][a-z0-9-]* (max 128)",
            reason="BAD_NAME",
            metadata={"field": what},
        )
    return value


class Registry:
    def __init__(
        self,
        engine: Engine,
        store: ArtifactStore,
        loader: BundleLoader,
        codec: Codec[ModelVersion],
    ) -> None:
        self.engine = engine
        self.store = store
        self.loader = loader
        self.codec = codec

    # -- writes ----------------------------------------------------------------------------

    def register(self, req: Registration) -> ModelVersion:
        """Verify the bundle (checksum, loadable) and record it as the next version."""
        check_name(req.model_name, "model_name")
        for alias in req.aliases:
            check_alias(alias)
        ref = resolve_artifact(self.store, req.bundle)
        bundle = self.loader(self.store, ref)  # NotFound / DataLoss / FailedPrecondition
        manifest = bundle.manifest
        version = ModelVersion(
            model_name=req.model_name,
            version=0,  # numbered when inserted
            bundle=BundleRef(ref.uri, ref.sha256, ref.size),
            input_schema=table_schema(bundle.input_schema),
            task_type=bundle.task,
            classes=[str(c) for c in (bundle.classes or [])],
            metrics={
                k: float(v) for k, v in (manifest.get("metrics") or {}).items() if v is not None
            },
            lineage=lineage_from_manifest(manifest, ref, req.parents),
            description=req.description,
            labels=dict(req.labels),
            has_training_stats=bool(bundle.training_stats),
        )
        for _attempt in range(5):
            try:
                return self._insert(req.model_name, version, req.aliases)
            except IntegrityError:  # a concurrent registration took the number: retry
                continue
        raise Aborted(f"could not allocate a version of {req.model_name}; retry")

    def _insert(self, name: str, version: ModelVersion, alias_names: Sequence[str]) -> ModelVersion:
        created = now()
        with write_transaction(self.engine) as conn:
            if conn.execute(select(models.c.name).where(models.c.name == name)).first() is None:
                conn.execute(
                    models.insert().values(
                        name=name, description=version.description, created_at=created
                    )
                )
            latest = (
                conn.execute(
                    select(func.max(model_versions.c.version)).where(
                        model_versions.c.model_name == name
                    )
                ).scalar()
                or 0
            )
            number = int(latest) + 1
            version.version = number
            version.create_time = created
            conn.execute(
                model_versions.insert().values(
                    model_name=name,
                    version=number,
                    body=self.codec.dumps(version),
                    created_at=created,
                )
            )
            for alias in alias_names:
                self._point(conn, name, alias, number)
        return self.get(name, number)

    @staticmethod
    def _point(conn, name: str, alias: str, number: int) -> int:
        old = conn.execute(
            select(aliases.c.version).where(
                (aliases.c.model_name == name) & (aliases.c.alias == alias)
            )
        ).scalar()
        if old is None:
            conn.execute(aliases.insert().values(model_name=name, alias=alias, version=number))
            return 0
        conn.execute(
            aliases.update()
            .where((aliases.c.model_name == name) & (aliases.c.alias == alias))
            .values(version=number)
        )
        return int(old)

    def set_alias(self, name: str, alias: str, number: int) -> tuple[ModelVersion, int]:
        check_alias(alias)
        self.get(name, number)
        with write_transaction(self.engine) as conn:
            previous = self._point(conn, name, alias, number)
        return self.get(name, number), previous

    def delete_alias(self, name: str, alias: str, in_use: Sequence[str]) -> int:
        if not alias:
            raise InvalidArgument("alias is required", reason="ALIAS_REQUIRED")
        number = self.resolve(name, alias)
        if in_use:
            raise FailedPrecondition(
                f"alias {name}@{alias} is served by endpoint(s) {', '.join(in_use)}",
                reason="ALIAS_IN_USE",
            )
        with write_transaction(self.engine) as conn:
            conn.execute(
                aliases.delete().where((aliases.c.model_name == name) & (aliases.c.alias == alias))
            )
        return number

    def delete_version(
        self, name: str, number: int, served_by: Sequence[str], *, delete_bundle: bool
    ) -> ModelVersion:
        version = self.get(name, number)
        if served_by:
            raise FailedPrecondition(
                f"{name} v{number} is served by endpoint(s) {', '.join(served_by)}",
                reason="VERSION_IN_USE",
            )
        if version.aliases:
            raise FailedPrecondition(
                f"{name} v{number} is pointed at by alias(es) {', '.join(version.aliases)}",
                reason="VERSION_ALIASED",
            )
        with write_transaction(self.engine) as conn:
            conn.execute(
                model_versions.delete().where(
                    (model_versions.c.model_name == name) & (model_versions.c.version == number)
                )
            )
        if delete_bundle:
            self.store.delete(resolve_artifact(self.store, version.bundle).key)
        return version

    # -- reads -----------------------------------------------------------------------------

    def resolve(self, name: str, alias: str) -> int:
        with self.engine.connect() as conn:
            self._require_model(conn, name)
            number = conn.execute(
                select(aliases.c.version).where(
                    (aliases.c.model_name == name) & (aliases.c.alias == alias)
                )
            ).scalar()
        if number is None:
            raise NotFound(f"model {name} has no alias '{alias}'", reason="ALIAS_NOT_FOUND")
        return int(number)

    def get_ref(self, ref: ModelRef) -> ModelVersion:
        check_name(ref.model_name, "model_name")
        if ref.alias:
            return self.get(ref.model_name, self.resolve(ref.model_name, ref.alias))
        if ref.version > 0:
            return self.get(ref.model_name, ref.version)
        return self.get(ref.model_name, self.latest(ref.model_name))

    def latest(self, name: str) -> int:
        with self.engine.connect() as conn:
            self._require_model(conn, name)
            number = conn.execute(
                select(func.max(model_versions.c.version)).where(
                    model_versions.c.model_name == name
                )
            ).scalar()
        if number is None:
            raise NotFound(f"model {name} has no versions", reason="VERSION_NOT_FOUND")
        return int(number)

    def get(self, name: str, number: int) -> ModelVersion:
        with self.engine.connect() as conn:
            self._require_model(conn, name)
            body = conn.execute(
                select(model_versions.c.body).where(
                    (model_versions.c.model_name == name) & (model_versions.c.version == number)
                )
            ).scalar()
            if body is None:
                raise NotFound(f"model {name} has no version {number}", reason="VERSION_NOT_FOUND")
            names = (
                conn.execute(
                    select(aliases.c.alias)
                    .where((aliases.c.model_name == name) & (aliases.c.version == number))
                    .order_by(aliases.c.alias)
                )
                .scalars()
                .all()
            )
        version = self.codec.loads(body)
        version.aliases = list(names)
        return version

    def list_models(self, prefix: str, offset: int, limit: int) -> tuple[list[Model], int]:
        query = select(models).where(models.c.name.startswith(prefix)).order_by(models.c.name)
        with self.engine.connect() as conn:
            rows, total = fetch_page(conn, query, offset, limit)
            out = []
            for row in rows:
                latest = (
                    conn.execute(
                        select(func.max(model_versions.c.version)).where(
                            model_versions.c.model_name == row.name
                        )
                    ).scalar()
                    or 0
                )
                alias_rows = conn.execute(
                    select(aliases.c.alias, aliases.c.version).where(
                        aliases.c.model_name == row.name
                    )
                ).all()
                out.append(
                    Model(
                        name=row.name,
                        latest_version=int(latest),
                        aliases={a: int(v) for a, v in alias_rows},
                        description=row.description,
                        create_time=row.created_at,
                    )
                )
        return out, total

    def list_versions(self, name: str, offset: int, limit: int) -> tuple[list[ModelVersion], int]:
        check_name(name, "model_name")
        query = (
            select(model_versions.c.version)
            .where(model_versions.c.model_name == name)
            .order_by(model_versions.c.version.desc())
        )
        with self.engine.connect() as conn:
            self._require_model(conn, name)
            rows, total = fetch_page(conn, query, offset, limit)
        return [self.get(name, int(r.version)) for r in rows], total

    @staticmethod
    def _require_model(conn, name: str) -> None:
        if conn.execute(select(models.c.name).where(models.c.name == name)).first() is None:
            raise NotFound(f"model {name} does not exist", reason="MODEL_NOT_FOUND")


def check_alias(alias: str) -> str:
    if not alias:
        raise InvalidArgument("alias is required", reason="ALIAS_REQUIRED")
    if alias.isdigit() or not NAME.match(alias):
        raise InvalidArgument(
            f"alias {alias!r} must match [a-z][a-z0-9-]* and not be a number", reason="BAD_ALIAS"
        )
    return alias

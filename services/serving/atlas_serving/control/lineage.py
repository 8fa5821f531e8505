"""Lineage of what serving owns: model versions, endpoints, predictions and monitoring jobs.

Downstream links come from the registry (versions naming a version as parent), the endpoint
specs (variants serving a version) and the prediction index (predictions of an endpoint or a
version; counted in full, listed newest first up to the limit). A prediction is known here
only when its endpoint records predictions (quality enabled) and within the index retention.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, func, select

from atlas_core import lineage as lin
from atlas_core.errors import NotFound
from atlas_core.jobs import JobRunner
from atlas_core.lineage import LineageLink, LineageNode, LineageView
from atlas_serving.control.endpoints import EndpointStore
from atlas_serving.control.registry import Registry
from atlas_serving.domain import ModelRef, ModelVersion
from atlas_serving.tables import model_versions, predictions


def _version_id(name: str, version: int) -> str:
    return lin.make("model_version", f"{name}@{version}")


class ServingLineage:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        endpoints: EndpointStore,
        jobs: JobRunner,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.endpoints = endpoints
        self.jobs = jobs

    def view(self, lid: lin.LineageId, limit: int) -> LineageView:
        if lid.kind == "model_version":
            return self._model_version(lid, limit)
        if lid.kind == "endpoint":
            return self._endpoint(lid.key, limit)
        if lid.kind == "prediction":
            return self._prediction(lid.key)
        if lid.kind == "serving_job":
            return LineageView(lin.job_node("serving", self._job(lid)))
        view = LineageView(None)  # a foreign id: the versions that name it as a parent
        self._versions_naming(str(lid), view, limit)
        return view

    def _job(self, lid: lin.LineageId) -> Any:
        try:
            return self.jobs.get(lid.key)
        except NotFound:
            raise lin.not_found(lid) from None

    # -- model versions -----------------------------------------------------------------------

    def _model_version(self, lid: lin.LineageId, limit: int) -> LineageView:
        name, selector = lin.ids.versioned(lid)
        ref = (
            ModelRef(name, version=int(selector))
            if selector.isdigit()
            else ModelRef(name, alias=selector)
        )
        try:
            mv = self.registry.get_ref(ref)
        except NotFound:
            raise lin.not_found(lid) from None
        me = _version_id(mv.model_name, mv.version)
        view = LineageView(_version_node(me, mv), _parents(mv))
        spec_rows = self.endpoints.snapshot()
        serving = sorted(
            n
            for n, (_etag, spec) in spec_rows.items()
            if any(
                v.model.model_name == mv.model_name and v.resolved_version == mv.version
                for v in spec.variants
            )
        )
        view.add_children(
            "endpoint",
            "deployed_to",
            [lin.make("endpoint", n) for n in serving[:limit]],
            len(serving),
        )
        self._versions_naming(me, view, limit)
        where = (predictions.c.model_name == mv.model_name) & (
            predictions.c.model_version == mv.version
        )
        self._predictions(where, view, limit)
        return view

    def _versions_naming(self, parent: str, view: LineageView, limit: int) -> None:
        """Registered versions whose lineage names ``parent`` (a scan of the registry)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(model_versions.c.body).order_by(model_versions.c.created_at.desc())
            ).scalars()
            found: list[LineageLink] = []
            for body in rows:
                mv = self.registry.codec.loads(body)
                role = next((p.role for p in _parents(mv) if p.id == parent), None)
                if role is not None:
                    found.append(LineageLink(role, _version_id(mv.model_name, mv.version)))
        if found:
            view.children.extend(found[:limit])
            view.child_counts["model_version"] = len(found)

    # -- endpoints ----------------------------------------------------------------------------

    def _endpoint(self, name: str, limit: int) -> LineageView:
        try:
            ep = self.endpoints.get(name)
        except NotFound:
            raise lin.not_found(lin.LineageId("endpoint", name)) from None
        node = LineageNode(
            lin.make("endpoint", name),
            create_time=ep.create_time,
            operation="create_endpoint",
            display_name=name,
        )
        parents = [
            LineageLink(f"variant:{v.name}", _version_id(v.model.model_name, v.resolved_version))
            for v in ep.spec.variants
        ]
        view = LineageView(node, parents)
        live = (predictions.c.endpoint_name == name) & predictions.c.shadow.is_(False)
        self._predictions(live, view, limit)
        return view

    # -- predictions --------------------------------------------------------------------------

    def _predictions(self, where: Any, view: LineageView, limit: int) -> None:
        """Count the predictions matching ``where`` and list the newest ``limit`` of them.
        Only row 0 is read: every prediction has one (a batch's rows share its id), so the
        count is the number of predictions and the newest are read in index order."""
        first_rows = where & (predictions.c.row == 0)
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.count()).select_from(predictions).where(first_rows)
            ).scalar()
            newest = (
                conn.execute(
                    select(predictions.c.prediction_id)
                    .where(first_rows)
                    .order_by(predictions.c.time_us.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        view.add_children(
            "prediction", "served", [lin.make("prediction", p) for p in newest], int(total or 0)
        )

    def _prediction(self, prediction_id: str) -> LineageView:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    predictions.c.endpoint_name,
                    predictions.c.variant,
                    predictions.c.model_name,
                    predictions.c.model_version,
                    predictions.c.shadow,
                    predictions.c.time_us,
                    predictions.c.entity_key,
                ).where(predictions.c.prediction_id == prediction_id)
            ).all()
        if not rows:
            raise lin.not_found(lin.LineageId("prediction", prediction_id))
        first = rows[0]
        entity = next((r.entity_key for r in rows if r.entity_key), "")
        node = LineageNode(
            lin.make("prediction", prediction_id),
            create_time=datetime.fromtimestamp(first.time_us / 1e6, timezone.utc),
            operation="predict",
            display_name=f"{first.endpoint_name}" + (f" entity {entity}" if entity else ""),
        )
        parents = [LineageLink("endpoint", lin.make("endpoint", first.endpoint_name))]
        seen: set[tuple[str, int]] = set()
        for r in rows:
            if (r.model_name, r.model_version) not in seen:
                seen.add((r.model_name, r.model_version))
                role = "shadow_model" if r.shadow else "model"
                parents.append(LineageLink(role, _version_id(r.model_name, r.model_version)))
        return LineageView(node, parents)


def _version_node(me: str, mv: ModelVersion) -> LineageNode:
    produced = mv.lineage.produced_by
    return LineageNode(
        me,
        create_time=mv.create_time,
        produced_by=lin.ids.job(produced[0], produced[1]) if produced else "",
        operation=mv.lineage.operation,
        display_name=mv.model_name,
    )


def _parents(mv: ModelVersion) -> list[LineageLink]:
    links = [LineageLink(p.role, lin.of_parent(p.kind, p.ref)) for p in mv.lineage.parents]
    produced = mv.lineage.produced_by
    if produced and produced[0] in lin.JOB_KIND:
        links.append(LineageLink("produced_by", lin.ids.job(produced[0], produced[1])))
    return _unique(links)


def _unique(links: Iterable[LineageLink]) -> list[LineageLink]:
    return list(dict.fromkeys(links))

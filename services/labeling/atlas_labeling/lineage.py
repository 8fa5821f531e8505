"""Lineage of what the labeling service owns: projects, items, label exports and jobs.

A project's children are its items and exports (counted in full, newest listed first); an
item imported as a bad case names the prediction it came from; an export names its project
and, when it was registered as a dataset, that dataset version as its child. For a
prediction (a foreign id) the service answers with the items imported from it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from atlas_core import lineage as lin
from atlas_core.errors import NotFound
from atlas_core.jobs import JobRunner
from atlas_core.lineage import LineageLink, LineageNode, LineageView
from atlas_labeling.projects import ProjectStore, aware
from atlas_labeling.tables import exports, items


class LabelingLineage:
    def __init__(self, engine: Engine, projects: ProjectStore, jobs: JobRunner) -> None:
        self.engine = engine
        self.projects = projects
        self.jobs = jobs

    def view(self, lid: lin.LineageId, limit: int) -> LineageView:
        if lid.kind == "labeling_project":
            return self._project(lid, limit)
        if lid.kind == "item":
            return self._item(lid)
        if lid.kind == "label_export":
            return self._export(lid)
        if lid.kind == "labeling_job":
            return LineageView(lin.job_node("labeling", self._job(lid)))
        view = LineageView(None)
        if lid.kind == "prediction":
            self._items(items.c.prediction_id == lid.key, "bad_case", view, limit)
        return view

    def _job(self, lid: lin.LineageId) -> Any:
        try:
            return self.jobs.get(lid.key)
        except NotFound:
            raise lin.not_found(lid) from None

    def _project(self, lid: lin.LineageId, limit: int) -> LineageView:
        try:
            project = self.projects.get(lid.key, with_stats=False)
        except NotFound:
            raise lin.not_found(lid) from None
        node = LineageNode(
            str(lid),
            create_time=project.created_at,
            operation="create_project",
            display_name=project.spec.name,
        )
        view = LineageView(node)
        self._items(items.c.project_id == lid.key, "item", view, limit)
        of_project = exports.c.project_id == lid.key
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.count()).select_from(exports).where(of_project)
            ).scalar()
            newest = conn.execute(
                select(exports.c.export_id)
                .where(of_project)
                .order_by(exports.c.created_at.desc())
                .limit(limit)
            ).scalars()
            view.add_children(
                "label_export",
                "export",
                [lin.make("label_export", e) for e in newest],
                int(total or 0),
            )
        return view

    def _items(self, where: Any, role: str, view: LineageView, limit: int) -> None:
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(items).where(where)).scalar()
            newest = conn.execute(
                select(items.c.item_id).where(where).order_by(items.c.seq.desc()).limit(limit)
            ).scalars()
            view.add_children("item", role, [lin.make("item", i) for i in newest], int(total or 0))

    def _item(self, lid: lin.LineageId) -> LineageView:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    items.c.project_id,
                    items.c.external_id,
                    items.c.prediction_id,
                    items.c.created_at,
                ).where(items.c.item_id == lid.key)
            ).first()
        if row is None:
            raise lin.not_found(lid)
        node = LineageNode(
            str(lid),
            create_time=aware(row.created_at),
            operation="import_bad_case" if row.prediction_id else "add_item",
            display_name=row.external_id or "",
        )
        parents = [LineageLink("project", lin.make("labeling_project", row.project_id))]
        if row.prediction_id:
            parents.append(LineageLink("bad_case", lin.make("prediction", row.prediction_id)))
        return LineageView(node, parents)

    def _export(self, lid: lin.LineageId) -> LineageView:
        with self.engine.connect() as conn:
            body = conn.execute(
                select(exports.c.body).where(exports.c.export_id == lid.key)
            ).scalar()
        if body is None:
            raise lin.not_found(lid)
        record = json.loads(body)
        job = lin.ids.job("labeling", lid.key)  # an export is named after its job
        node = LineageNode(
            str(lid),
            create_time=datetime.fromisoformat(record["create_time"]),
            produced_by=job,
            operation=f"export({record.get('format', '')})",
        )
        view = LineageView(
            node,
            [
                LineageLink("labels", lin.make("labeling_project", record["project_id"])),
                LineageLink("produced_by", job),
            ],
        )
        if record.get("dataset"):
            view.add_children("dataset", "labels", [lin.of_parent("dataset", record["dataset"])], 1)
        return view

"""Lineage of what the data service owns: feature group versions, dataset versions and data
jobs (match, derive, ingest).

A dataset version's parents are recorded with it; its children, and a feature group
version's, are the dataset versions that name it as a parent (a scan of the catalog). For a
foreign id (a label export, labeling project or artifact) the service answers with the
datasets derived from it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from atlas_core import lineage as lin
from atlas_core.errors import NotFound
from atlas_core.jobs import JobRunner
from atlas_core.lineage import LineageLink, LineageNode, LineageView
from atlas_data.datasets import DatasetCatalog, DatasetRecord
from atlas_data.feature_groups import FeatureGroupCatalog
from atlas_data.tables import datasets


def dataset_lineage_id(record: DatasetRecord) -> str:
    return lin.make("dataset", f"{record.dataset_id}@{record.version}")


class DataLineage:
    def __init__(
        self,
        engine: Engine,
        groups: FeatureGroupCatalog,
        catalog: DatasetCatalog,
        jobs: JobRunner,
    ) -> None:
        self.engine = engine
        self.groups = groups
        self.catalog = catalog
        self.jobs = jobs

    def view(self, lid: lin.LineageId, limit: int) -> LineageView:
        if lid.kind == "dataset":
            return self._dataset(lid, limit)
        if lid.kind == "feature_group":
            return self._feature_group(lid, limit)
        if lid.kind == "data_job":
            return self._job(lid)
        view = LineageView(None)
        self._derived(str(lid), view, limit)
        return view

    def _dataset(self, lid: lin.LineageId, limit: int) -> LineageView:
        dataset_id, version = lin.ids.version_number(lid)
        try:
            record = self.catalog.get(dataset_id, version)
        except NotFound:
            raise lin.not_found(lid) from None
        node = LineageNode(
            str(lid),
            create_time=datetime.fromisoformat(record.created_at) if record.created_at else None,
            produced_by=lin.ids.job("data", record.produced_by_job)
            if record.produced_by_job
            else "",
            operation=record.operation,
            display_name=record.name,
        )
        view = LineageView(node, _parents(record))
        self._derived(str(lid), view, limit)
        return view

    def _feature_group(self, lid: lin.LineageId, limit: int) -> LineageView:
        name, version = lin.ids.version_number(lid)
        try:
            group = self.groups.get(name, version)
        except NotFound:
            raise lin.not_found(lid) from None
        node = LineageNode(
            str(lid),
            create_time=group.created_at,
            operation="create_feature_group",
            display_name=name,
        )
        view = LineageView(node)
        self._derived(str(lid), view, limit)
        return view

    def _job(self, lid: lin.LineageId) -> LineageView:
        try:
            record = self.jobs.get(lid.key)
        except NotFound:
            raise lin.not_found(lid) from None
        view = LineageView(lin.job_node("data", record))
        me = str(lid)
        for dataset_id, version in (record.result or {}).get("datasets") or []:
            try:
                made = self.catalog.get(dataset_id, int(version))
            except NotFound:  # deleted since: still the job's output, reported missing
                view.add_children("dataset", "output", [f"dataset:{dataset_id}@{version}"], 1)
                continue
            view.add_children("dataset", "output", [dataset_lineage_id(made)], 1)
            view.parents.extend(p for p in _parents(made) if p.id != me)
        view.parents = list(dict.fromkeys(view.parents))
        return view

    def _derived(self, parent: str, view: LineageView, limit: int) -> None:
        """Dataset versions whose recorded parents include ``parent``, newest first."""
        found: list[LineageLink] = []
        with self.engine.connect() as conn:
            bodies = conn.execute(
                select(datasets.c.body).order_by(datasets.c.created_at.desc())
            ).scalars()
            for body in bodies:
                record = DatasetRecord.from_json(body)
                role = next((p.role for p in _parents(record) if p.id == parent), None)
                if role is not None:
                    found.append(LineageLink(role, dataset_lineage_id(record)))
        if found:
            view.children.extend(found[:limit])
            view.child_counts["dataset"] = view.child_counts.get("dataset", 0) + len(found)


def _parents(record: DatasetRecord) -> list[LineageLink]:
    links = [LineageLink(p.role, lin.of_parent(p.kind, p.ref)) for p in record.parents]
    if record.produced_by_job:
        links.append(LineageLink("produced_by", lin.ids.job("data", record.produced_by_job)))
    return list(dict.fromkeys(links))

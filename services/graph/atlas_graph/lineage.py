"""Lineage of what the graph service owns: graphs, partitionings and graph jobs.

A graph's parents are its sources (files it was imported from, a graph it was derived
from); a partitioning's parent is its graph; a job's parents are the graph or partitioning
its spec names and its children what it made. A partitioning's children are the training
and inference jobs run on it (a scan of those jobs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from atlas_core import lineage as lin
from atlas_core.errors import NotFound
from atlas_core.jobs import JobRecord, JobRunner
from atlas_core.lineage import LineageLink, LineageNode, LineageView
from atlas_graph.catalog import GraphCatalog
from atlas_graph.jobs import KIND_INFER, KIND_TRAIN
from atlas_graph.tables import partitionings


class GraphLineage:
    def __init__(self, engine: Engine, catalog: GraphCatalog, jobs: JobRunner) -> None:
        self.engine = engine
        self.catalog = catalog
        self.jobs = jobs

    def view(self, lid: lin.LineageId, limit: int) -> LineageView:
        if lid.kind == "graph":
            return self._graph(lid, limit)
        if lid.kind == "partitioning":
            return self._partitioning(lid, limit)
        if lid.kind == "graph_job":
            return self._job(lid)
        return LineageView(None)  # graphs are not derived from other services' nodes

    def _graph(self, lid: lin.LineageId, limit: int) -> LineageView:
        try:
            record = self.catalog.get_graph(lid.key)
        except NotFound:
            raise lin.not_found(lid) from None
        raw = record.get("lineage") or {}
        job = lin.ids.job("graph", raw["job_id"]) if raw.get("job_id") else ""
        node = LineageNode(
            str(lid),
            create_time=_time(record),
            produced_by=job,
            operation=str(raw.get("operation") or ""),
            display_name=str(record.get("name") or ""),
        )
        parents = [
            LineageLink(
                str(p.get("role") or ""),
                lin.make("graph", p["graph_id"])
                if "graph_id" in p
                else lin.make("artifact", str(p.get("uri", ""))),
            )
            for p in raw.get("parents") or []
        ]
        if job:
            parents.append(LineageLink("produced_by", job))
        view = LineageView(node, parents)
        of_graph = partitionings.c.graph_id == lid.key
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.count()).select_from(partitionings).where(of_graph)
            ).scalar()
            newest = conn.execute(
                select(partitionings.c.partitioning_id)
                .where(of_graph)
                .order_by(partitionings.c.created_at.desc())
                .limit(limit)
            ).scalars()
            view.add_children(
                "partitioning",
                "partitioned",
                [lin.make("partitioning", p) for p in newest],
                int(total or 0),
            )
        return view

    def _partitioning(self, lid: lin.LineageId, limit: int) -> LineageView:
        with self.engine.connect() as conn:
            graph_id = conn.execute(
                select(partitionings.c.graph_id).where(partitionings.c.partitioning_id == lid.key)
            ).scalar()
        if graph_id is None:
            raise lin.not_found(lid)
        record = self.catalog.get_partitioning(graph_id, lid.key)
        job = lin.ids.job("graph", record["job_id"]) if record.get("job_id") else ""
        spec = record["spec"]
        node = LineageNode(
            str(lid),
            create_time=_time(record),
            produced_by=job,
            operation=f"partition({spec['method']}, {spec['num_partitions']})",
        )
        parents = [LineageLink("graph", lin.make("graph", graph_id))]
        if job:
            parents.append(LineageLink("produced_by", job))
        view = LineageView(node, parents)
        users = [
            lin.ids.job("graph", r.id)
            for kind in (KIND_TRAIN, KIND_INFER)
            for r in self.jobs.list_all(kind=kind)
            if lin.make("partitioning", lid.key) in _job_inputs(r)
        ]
        view.add_children("graph_job", "input", users[:limit], len(users))
        return view

    def _job(self, lid: lin.LineageId) -> LineageView:
        try:
            record = self.jobs.get(lid.key)
        except NotFound:
            raise lin.not_found(lid) from None
        view = LineageView(
            lin.job_node("graph", record), [LineageLink("input", i) for i in _job_inputs(record)]
        )
        result = record.result or {}
        if result.get("graph"):
            view.add_children(
                "graph", "output", [lin.make("graph", result["graph"]["graph_id"])], 1
            )
        if result.get("partitioning"):
            made = result["partitioning"]["partitioning_id"]
            view.add_children("partitioning", "output", [lin.make("partitioning", made)], 1)
        return view


def _job_inputs(record: JobRecord) -> list[str]:
    """The graph or partitioning a job's spec names."""
    spec: dict[str, Any] = record.spec
    ref = spec.get("ref") or {}
    if ref.get("graph_id"):
        return [lin.of_parent("graph", ref)]
    if spec.get("graph_id"):
        return [lin.make("graph", spec["graph_id"])]
    return []


def _time(record: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(record["create_time"]) if record.get("create_time") else None

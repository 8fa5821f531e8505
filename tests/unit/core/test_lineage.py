"""Lineage ids and the walk over a fake set of services: parents and children followed to
their owners, missing and failing nodes reported, cycles reported without looping, the node
budget respected."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from atlas.common.v1 import common_pb2
from atlas_core import lineage as lin
from atlas_core.errors import InvalidArgument, NotFound, Unavailable
from atlas_core.lineage import LineageLink, LineageNode, LineageView, find_cycles, render, walk
from atlas_core.lineage.walk import Edge

T0 = datetime(2026, 12, 7, tzinfo=timezone.utc)


def test_ids_are_typed_and_bare_ids_recognised_by_their_form() -> None:
    assert lin.parse("dataset:churn@3") == lin.LineageId("dataset", "churn@3")
    assert lin.parse("model_version:fraud@prod").service == "serving"
    assert lin.recognise("prj-abc").kind == "labeling_project"
    assert lin.recognise("itm-abc").kind == "item"
    assert lin.recognise("g_0123").kind == "graph"
    prediction = f"{int(T0.timestamp() * 1000):012x}" + "ab" * 10
    assert lin.recognise(prediction) == lin.LineageId("prediction", prediction)
    for bad in ("", "dataset", "dataset:", "nokind:1", "churn@3", "f" * 32):
        with pytest.raises(InvalidArgument) as err:
            lin.recognise(bad)
        assert err.value.reason == "BAD_LINEAGE_ID"
    assert lin.ids.version_number(lin.parse("dataset:a@b@2")) == ("a@b", 2)
    for bad in ("dataset:churn", "dataset:churn@0", "dataset:churn@x"):
        with pytest.raises(InvalidArgument):
            lin.ids.version_number(lin.parse(bad))
    assert lin.ids.trial(lin.parse("trial:job1#-2")) == ("job1", -2)
    with pytest.raises(InvalidArgument):
        lin.ids.trial(lin.parse("trial:job1"))


def test_typed_parent_references_map_to_ids() -> None:
    def pb(**kw: object) -> str:
        return lin.ids.of_parent_pb(common_pb2.LineageParent(role="r", **kw))  # type: ignore[arg-type]  # oneof kwargs

    assert pb(dataset=common_pb2.DatasetRef(dataset_id="d", version=2)) == "dataset:d@2"
    assert pb(model=common_pb2.ModelRef(model_name="m", version=4)) == "model_version:m@4"
    assert pb(model=common_pb2.ModelRef(model_name="m", alias="prod")) == "model_version:m@prod"
    assert pb(feature_group=common_pb2.FeatureGroupRef(name="f", version=1)) == (
        "feature_group:f@1"
    )
    assert pb(label_set=common_pb2.LabelSetRef(project_id="prj-1")) == "labeling_project:prj-1"
    assert pb(label_set=common_pb2.LabelSetRef(project_id="p", export_id="e")) == ("label_export:e")
    assert pb(trial=common_pb2.TrialRef(job_id="j", trial_number=3)) == "trial:j#3"
    assert pb(trial=common_pb2.TrialRef(job_id="j", trial_number=-1)) == "training_job:j"
    assert pb(graph=common_pb2.GraphRef(graph_id="g_1", partitioning_id="p_2")) == (
        "partitioning:p_2"
    )
    assert pb(endpoint=common_pb2.EndpointRef(endpoint_name="e")) == "endpoint:e"
    assert pb(artifact=common_pb2.ArtifactRef(uri="s3://b/k")) == "artifact:s3://b/k"


def test_views_round_trip_through_the_proto() -> None:
    view = LineageView(
        LineageNode("dataset:d@1", create_time=T0, produced_by="data_job:j", operation="split"),
        [LineageLink("samples", "dataset:c@2")],
    )
    view.add_children("dataset", "derived", ["dataset:e@1"], 7)
    back = lin.from_pb(lin.to_pb(view))
    assert back == view
    msg = lin.to_pb(view)
    assert (msg.node.kind, msg.node.service) == ("dataset", "data")
    limit = lin.view.resolve_children_limit
    assert limit(0) == 20 and limit(5000) == 1000
    with pytest.raises(InvalidArgument):
        limit(-1)


class FakeServices:
    """Owners answer from ``owned``; other services answer with children from ``foreign``."""

    def __init__(
        self,
        owned: dict[str, LineageView],
        foreign: dict[tuple[str, str], list[LineageLink]] | None = None,
        down: set[str] = frozenset(),  # type: ignore[assignment]  # frozenset is a fine default
    ) -> None:
        self.owned = owned
        self.foreign = foreign or {}
        self.down = down
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, service: str, lid: str, limit: int, depth: int) -> LineageView:
        with self._lock:
            self.calls.append((service, lid))
        if service in self.down:
            raise Unavailable(f"{service} is down")
        if lin.OWNER[lin.parse(lid).kind] == service:
            return lin.answer(self._view, lid, limit, depth)
        assert depth == 0  # ancestors are asked of owners only
        children = self.foreign.get((service, lid), [])
        view = LineageView(None, children=children[:limit])
        if children:
            view.child_counts[lin.parse(children[0].id).kind] = len(children)
        return view

    def _view(self, lid: lin.LineageId, limit: int) -> LineageView:
        if str(lid) not in self.owned:
            raise NotFound(f"{lid} does not exist")
        return replace(self.owned[str(lid)], ancestors=[])


def node(lid: str, *parents: tuple[str, str], children: tuple[str, ...] = ()) -> LineageView:
    view = LineageView(LineageNode(lid, create_time=T0), [LineageLink(r, p) for r, p in parents])
    view.children = [LineageLink("made", c) for c in children]
    return view


def test_walk_follows_owners_both_ways_and_reports_missing_and_failing_nodes() -> None:
    fake = FakeServices(
        {
            "prediction:" + "1" * 32: node(
                "prediction:" + "1" * 32, ("model", "model_version:m@1")
            ),
            "model_version:m@1": node(
                "model_version:m@1",
                ("trial", "trial:j#2"),
                ("training_data", "dataset:d@1"),
                ("bundle", "artifact:s3://b/m"),
                children=("prediction:" + "1" * 32,),
            ),
            "dataset:d@1": node("dataset:d@1", ("samples", "dataset:gone@1")),
        },
        foreign={("trainer", "dataset:d@1"): [LineageLink("training_data", "training_job:j")]},
        down={"trainer"},
    )
    graph = walk("model_version:m@1", fake)
    status = {i: n.status for i, n in graph.nodes.items()}
    assert status == {
        "model_version:m@1": "ok",
        "prediction:" + "1" * 32: "ok",
        "trial:j#2": "error",  # its service is down: reported, the walk goes on
        "dataset:d@1": "ok",
        "artifact:s3://b/m": "external",
        "dataset:gone@1": "missing",  # deleted parent
    }
    assert Edge("dataset:gone@1", "dataset:d@1", "samples") in graph.edges
    assert not graph.cycles and not graph.truncated
    # Each node's owner was asked once; downstream also asks the services that reference it.
    owner_calls = [c for c in fake.calls if lin.OWNER[lin.parse(c[1]).kind] == c[0]]
    assert len(owner_calls) == len(set(owner_calls))
    assert ("labeling", "model_version:m@1") in fake.calls
    assert "missing" in render(graph) and "external" in render(graph)
    assert graph.to_dict()["root"] == "model_version:m@1"


def test_a_service_answers_for_its_own_ancestors_in_one_call() -> None:
    chain = [f"dataset:d{i}@1" for i in range(5)]
    owned = {
        c: node(c, *([("p", chain[i + 1])] if i + 1 < len(chain) else []))
        for i, c in enumerate(chain)
    }
    owned["dataset:d2@1"].parents.append(LineageLink("p", "dataset:deleted@1"))
    fake = FakeServices(owned)
    graph = walk(chain[0], fake, downstream=False)
    assert [n.status for n in graph.nodes.values()].count("ok") == 5
    assert graph.nodes["dataset:deleted@1"].status == "missing"
    # One call for the whole chain, one more for the parent its service could not answer for.
    assert fake.calls == [("data", chain[0]), ("data", "dataset:deleted@1")]


def test_walk_of_an_unknown_id_is_not_found() -> None:
    with pytest.raises(NotFound):
        walk("dataset:none@1", FakeServices({}))
    with pytest.raises(InvalidArgument):
        walk("artifact:s3://b/k", FakeServices({}))


def test_a_cycle_is_reported_and_not_looped_on() -> None:
    # a <- b <- c <- a through parents, and a -> b -> c -> a through children.
    fake = FakeServices(
        {
            "dataset:a@1": node("dataset:a@1", ("p", "dataset:c@1"), children=("dataset:b@1",)),
            "dataset:b@1": node("dataset:b@1", ("p", "dataset:a@1"), children=("dataset:c@1",)),
            "dataset:c@1": node("dataset:c@1", ("p", "dataset:b@1"), children=("dataset:a@1",)),
        }
    )
    graph = walk("dataset:a@1", fake)
    assert len(graph.cycles) == 1
    assert sorted(graph.cycles[0]) == ["dataset:a@1", "dataset:b@1", "dataset:c@1"]
    # One call: the service answered for its own ancestors without looping on the cycle.
    assert [c for c in fake.calls if c[0] == "data"] == [("data", "dataset:a@1")]
    # Downstream only, each node is fetched once (no ancestors asked for).
    fake.calls.clear()
    down = walk("dataset:a@1", fake, upstream=False)
    assert len(down.cycles) == 1 and sorted(c for c in fake.calls if c[0] == "data") == [
        ("data", "dataset:a@1"),
        ("data", "dataset:b@1"),
        ("data", "dataset:c@1"),
    ]
    assert "(cycle)" in render(graph) and "cycles:" in render(graph)


def test_the_node_budget_truncates_the_walk() -> None:
    children = tuple(f"dataset:c{i}@1" for i in range(10))
    owned = {"dataset:root@1": node("dataset:root@1", children=children)}
    owned |= {c: node(c) for c in children}
    graph = walk("dataset:root@1", FakeServices(owned), max_nodes=4)
    assert graph.truncated and len(graph.nodes) == 4


def test_find_cycles_reports_each_once() -> None:
    edges = [Edge("a", "b", ""), Edge("b", "a", ""), Edge("b", "c", ""), Edge("c", "c", "")]
    assert sorted(map(sorted, find_cycles(edges))) == [["a", "b"], ["c"]]
    assert find_cycles([Edge("a", "b", ""), Edge("a", "c", ""), Edge("b", "c", "")]) == []

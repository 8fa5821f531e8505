"""How the console shows protos: enum words, times, links to pages, bar geometry and the
lineage graph's layout (ancestors left of the root, descendants right)."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas_core.console import views
from atlas_core.lineage import Edge, LineageGraph, WalkedNode


def test_enum_names_read_as_short_words() -> None:
    status = common_pb2.JobStatus(state=common_pb2.JOB_STATE_SUCCEEDED)
    assert views.enum_name(status, "state") == "succeeded"
    deployment = serving_pb.Deployment(state=serving_pb.DEPLOYMENT_STATE_ROLLED_BACK)
    assert views.enum_name(deployment, "state") == "rolled back"
    assert views.enum_name(common_pb2.JobStatus(), "state") == "unspecified"


def test_times_and_durations() -> None:
    assert views.when(timestamp_pb2.Timestamp()) == "-"
    assert views.when(timestamp_pb2.Timestamp(seconds=1_800_000_000)) == "2027-01-15 08:00:00 UTC"
    assert views.took(duration_pb2.Duration(seconds=4, nanos=200_000_000)) == "4.2 s"
    assert views.took(duration_pb2.Duration(seconds=185)) == "3 min 5 s"
    start, end = timestamp_pb2.Timestamp(seconds=100), timestamp_pb2.Timestamp(seconds=165)
    assert views.took_until(start, end) == "1 min 5 s"
    assert views.took_until(start, timestamp_pb2.Timestamp()) == "-"


def test_lineage_parents_link_to_their_pages() -> None:
    parent = common_pb2.LineageParent(
        role="training_data", dataset=common_pb2.DatasetRef(dataset_id="a b", version=3)
    )
    link = views.parent_link(parent)
    assert (link.kind, link.text, link.href) == ("dataset", "a b v3", "/datasets/a%20b?version=3")
    trial = common_pb2.LineageParent(trial=common_pb2.TrialRef(job_id="j1", trial_number=4))
    assert views.parent_link(trial).href == "/jobs/j1"
    label_set = common_pb2.LineageParent(label_set=common_pb2.LabelSetRef(project_id="prj-1"))
    assert views.parent_link(label_set).href == ""
    assert views.page_of("model_version:churn@2") == "/models/churn"
    assert views.page_of("trial:j1#-2") == "/jobs/j1"
    assert views.page_of("item:itm-1") == ""


def test_bars_scale_to_the_largest_value() -> None:
    chart = views.bar_chart([("a", 2.0, "2"), ("b", 1.0, "1"), ("c", float("nan"), "-")])
    assert [b.width for b in chart.bars] == [chart.bar_width, chart.bar_width / 2, 1.0]
    assert [b.y for b in chart.bars] == [0, chart.row, 2 * chart.row]
    warn = views.bar_chart([("ok", 0.001, ""), ("high", 0.2, "")], warn_above=0.01, scale=1.0)
    assert [b.tone for b in warn.bars] == ["", "warn"]
    assert warn.bars[1].width == 0.2 * warn.bar_width
    # the text after a full-length bar fits inside the picture (a p99 kept its unit)
    text = "p99 3079.8 ms · p50 235.5 ms"
    latency = views.bar_chart([("blue · 15 min", 3079.8, text)])
    assert latency.width >= latency.label_width + latency.bar_width + 6 + 7 * len(text)


def test_lineage_layout_puts_ancestors_left_and_descendants_right() -> None:
    nodes = {
        "artifact:s3://b/f.parquet": WalkedNode(
            "artifact:s3://b/f.parquet", "artifact", "", "external"
        ),
        "dataset:d@1": WalkedNode("dataset:d@1", "dataset", "data"),
        "training_job:j": WalkedNode("training_job:j", "training_job", "trainer"),
        "trial:j#-2": WalkedNode("trial:j#-2", "trial", "trainer"),
        "model_version:m@1": WalkedNode("model_version:m@1", "model_version", "serving"),
    }
    edges = [
        Edge("artifact:s3://b/f.parquet", "dataset:d@1", "source"),
        Edge("dataset:d@1", "training_job:j", "training_data"),
        Edge("training_job:j", "trial:j#-2", "trial"),
        Edge("dataset:d@1", "model_version:m@1", "training_data"),
    ]
    layout = views.lineage_layout(LineageGraph("dataset:d@1", nodes, edges))
    at = {n.id: n for n in layout.nodes}
    assert at["artifact:s3://b/f.parquet"].x < at["dataset:d@1"].x < at["training_job:j"].x
    assert at["training_job:j"].x == at["model_version:m@1"].x < at["trial:j#-2"].x
    assert at["training_job:j"].y != at["model_version:m@1"].y
    assert at["dataset:d@1"].root and at["trial:j#-2"].label == "ensemble of j"
    assert (
        at["artifact:s3://b/f.parquet"].href == ""
        and at["artifact:s3://b/f.parquet"].label == "f.parquet"
    )
    assert at["dataset:d@1"].page == "/datasets/d?version=1"
    assert len(layout.edges) == 4 and not any(e.back for e in layout.edges)
    # A parent found right of its child (the ensemble trial names the model version) is
    # drawn back from its left side, inside the picture.
    edges.append(Edge("trial:j#-2", "model_version:m@1", "trial"))
    back = views.lineage_layout(LineageGraph("dataset:d@1", nodes, edges)).edges[-1]
    assert back.back and back.path.startswith(f"M{at['trial:j#-2'].x:.0f},")
    assert layout.width >= at["trial:j#-2"].x + views.NODE_W

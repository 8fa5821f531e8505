"""How protos read on the console's pages: enum names, times, durations, numbers, links to
the page of whatever a lineage parent names, and bar charts as plain SVG geometry. Display
only: every figure comes from a service."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from google.protobuf import duration_pb2
from google.protobuf.message import Message

from atlas.common.v1 import common_pb2

TERMINAL_JOB_STATES = frozenset(
    {
        common_pb2.JOB_STATE_SUCCEEDED,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
    }
)


def enum_name(message: Message, field: str) -> str:
    """``state`` of a message as a short lowercase word (JOB_STATE_RUNNING -> running)."""
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    name = descriptor.values_by_number[value].name if value in descriptor.values_by_number else ""
    prefix = "".join(c if c.islower() else "_" + c for c in descriptor.name).lstrip("_")
    return name.removeprefix(prefix.upper() + "_").lower().replace("_", " ") or "-"


def when(ts: Any) -> str:
    """A protobuf Timestamp as UTC, or "-" when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return "-"
    at = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(duration: Any) -> float:
    return float(duration.seconds + duration.nanos / 1e9)


def took(duration: Any) -> str:
    """A protobuf Duration as "4.2 s" / "3 min 5 s"; "-" when zero."""
    s = seconds(duration)
    if s <= 0:
        return "-"
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def took_until(start: Any, end: Any) -> str:
    """The time between two protobuf Timestamps ("-" unless both are set)."""
    if not start.seconds or not end.seconds:
        return "-"
    span = end.ToNanoseconds() - start.ToNanoseconds()
    return took(duration_pb2.Duration(seconds=span // 10**9, nanos=span % 10**9))


def num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def pct(value: float) -> str:
    return f"{100 * value:.1f}%" if math.isfinite(value) else "-"


@dataclass(frozen=True)
class Link:
    kind: str
    text: str
    href: str  # "" when the console has no page for it


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


def parent_link(parent: common_pb2.LineageParent) -> Link:
    """Where a lineage parent points, as a link to its console page when there is one."""
    kind = parent.WhichOneof("ref") or ""
    if kind == "dataset":
        d = parent.dataset
        return Link(
            "dataset",
            f"{d.dataset_id} v{d.version}",
            _path("datasets", d.dataset_id) + f"?version={d.version}",
        )
    if kind == "model":
        m = parent.model
        selector = m.WhichOneof("selector")
        which = f" v{m.version}" if selector == "version" else (f" @{m.alias}" if selector else "")
        return Link("model", m.model_name + which, _path("models", m.model_name))
    if kind == "trial":
        t = parent.trial
        return Link(
            "trial", f"trial {t.trial_number} of job {t.job_id[:8]}", _path("jobs", t.job_id)
        )
    if kind == "endpoint":
        e = parent.endpoint
        return Link("endpoint", e.endpoint_name, _path("endpoints", e.endpoint_name))
    if kind == "feature_group":
        g = parent.feature_group
        return Link("feature group", f"{g.name} v{g.version}", "")
    if kind == "label_set":
        s = parent.label_set
        return Link("label set", f"project {s.project_id}, export {s.export_id}", "")
    if kind == "graph":
        return Link("graph", parent.graph.graph_id, "")
    if kind == "artifact":
        return Link("file", parent.artifact.uri.rsplit("/", 1)[-1], "")
    return Link(kind or "unknown", "-", "")


def job_link(job: common_pb2.JobRef) -> Link:
    if not job.job_id:
        return Link("job", "-", "")
    href = _path("jobs", job.job_id) if job.service.endswith("trainer") else ""
    return Link(f"{job.service or 'job'} job", job.job_id, href)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    y: float  # top of the bar's row, in SVG units
    width: float  # bar length, in SVG units
    tone: str = ""  # CSS class suffix: "", "warn", "bad"


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars, one row each, scaled to the largest value (or ``scale``)."""

    bars: list[Bar]
    height: float
    label_width: float = 180
    bar_width: float = 360
    row: float = 22

    @property
    def width(self) -> float:
        # room after the longest bar for its text (~7 units a character at the page's size)
        text = max((len(b.text) for b in self.bars), default=0) * 7.0 + 12
        return self.label_width + self.bar_width + max(90.0, text)


def bar_chart(
    rows: list[tuple[str, float, str]],
    *,
    scale: float | None = None,
    warn_above: float | None = None,
    tones: list[str] | None = None,
) -> BarChart:
    """``rows`` of (label, value, text shown after the bar)."""
    finite = [v for _, v, _ in rows if math.isfinite(v)]
    top = scale if scale else max([abs(v) for v in finite] + [0.0])
    chart = BarChart([], 0)
    bars = []
    for i, (label, value, text) in enumerate(rows):
        length = 0.0 if not math.isfinite(value) or top <= 0 else abs(value) / top
        tone = (
            tones[i] if tones else ("warn" if warn_above is not None and value > warn_above else "")
        )
        bars.append(
            Bar(
                label,
                value,
                text,
                i * chart.row,
                max(1.0, min(1.0, length) * chart.bar_width),
                tone,
            )
        )
    return BarChart(bars, len(bars) * chart.row + 4)


# ---- lineage graph ----------------------------------------------------------------------

NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 230.0, 44.0, 70.0, 14.0, 10.0


def page_of(lineage_id: str) -> str:
    """The console page of what a lineage id names ("" when the console has none)."""
    kind, _, key = lineage_id.partition(":")
    name, _, version = key.rpartition("@")
    if kind == "dataset" and name:
        return _path("datasets", name) + (f"?version={version}" if version.isdigit() else "")
    if kind == "training_job":
        return _path("jobs", key)
    if kind == "trial":
        return _path("jobs", key.rpartition("#")[0])
    if kind == "model_version" and name:
        return _path("models", name)
    if kind == "endpoint":
        return _path("endpoints", key)
    return ""


def lineage_href(lineage_id: str) -> str:
    return "/lineage?id=" + quote(lineage_id, safe="")


@dataclass(frozen=True)
class PlacedNode:
    id: str
    kind: str
    label: str
    status: str
    service: str
    x: float
    y: float
    root: bool
    href: str  # the lineage graph around this node
    page: str  # its console page, if any


@dataclass(frozen=True)
class PlacedEdge:
    path: str  # SVG path data
    role: str
    parent: str
    child: str
    back: bool = False


@dataclass(frozen=True)
class LineageLayout:
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: float
    height: float


def _label(node: Any) -> str:
    kind, _, key = node.id.partition(":")
    shown = node.node.display_name if node.node is not None and node.node.display_name else key
    if kind == "artifact":
        shown = key.rsplit("/", 1)[-1]
    elif kind == "trial":
        job, _, number = key.rpartition("#")
        shown = f"{'ensemble' if number.startswith('-') else '#' + number} of {job[:8]}"
    elif kind.endswith("job") or kind == "prediction":
        shown = key[:12] + ("…" if len(key) > 12 else "")
    return shown if len(shown) <= 30 else shown[:29] + "…"


def lineage_layout(graph: Any) -> LineageLayout:
    """Columns by distance from the root: ancestors to the left, descendants to the right;
    each edge a curve from a parent's right side to its child's left side."""
    column = {graph.root: 0}
    for step, sign in ((graph.parents_of, -1), (graph.children_of, 1)):
        frontier = [graph.root]
        while frontier:
            following = []
            for at in frontier:
                for edge in step(at):
                    other = edge.parent if sign < 0 else edge.child
                    if other not in column and other in graph.nodes:
                        column[other] = column[at] + sign
                        following.append(other)
            frontier = following
    low = min(column.values())
    rows: dict[int, int] = {}
    placed: dict[str, PlacedNode] = {}
    for lid in sorted(column, key=lambda i: (column[i], i)):
        node = graph.nodes[lid]
        col = column[lid] - low
        row = rows.get(col, 0)
        rows[col] = row + 1
        placed[lid] = PlacedNode(
            id=lid,
            kind=node.kind.replace("_", " "),
            label=_label(node),
            status=node.status,
            service=node.service or "store",
            x=MARGIN + col * (NODE_W + COL_GAP),
            y=MARGIN + row * (NODE_H + ROW_GAP),
            root=lid == graph.root,
            href=lineage_href(lid) if node.service else "",  # store objects are leaves
            page=page_of(lid),
        )
    edges = []
    for e in graph.edges:
        a, b = placed.get(e.parent), placed.get(e.child)
        if a is None or b is None:
            continue
        y1, y2 = a.y + NODE_H / 2, b.y + NODE_H / 2
        back = b.x <= a.x  # a parent placed right of its child (reached by another path)
        # Forward: right side to left side; back: left side to right side, dashed.
        x1, x2 = (a.x, b.x + NODE_W) if back else (a.x + NODE_W, b.x)
        bend = (-1 if back else 1) * max(30.0, abs(x2 - x1) / 2)
        curve = f"C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        path = f"M{x1:.0f},{y1:.0f} {curve}"
        edges.append(PlacedEdge(path, e.role, e.parent, e.child, back))
    columns = (max(column.values()) - low + 1) if column else 1
    height = max(rows.values(), default=1) * (NODE_H + ROW_GAP) + 2 * MARGIN
    width = columns * (NODE_W + COL_GAP) - COL_GAP + 2 * MARGIN
    return LineageLayout(list(placed.values()), edges, width, height)

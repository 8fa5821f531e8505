"""Report plots as self-contained HTML artifacts (inline SVG; no scripts, no external assets).

matplotlib is not a platform dependency, so PNGs are not produced; every plot is one HTML
file that opens in any browser and embeds in other pages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from atlas_core.storage import ArtifactRef, ArtifactStore
from atlas_trainer.automl.search import INTERRUPTED
from atlas_trainer.reports import _svg
from atlas_trainer.reports.importance import ImportanceResult

HTML_METADATA = {"content-type": "text/html"}
LEADERBOARD_COLUMNS = (
    ("rank", "rank"),
    ("number", "trial"),
    ("pipeline", "pipeline"),
    ("score", "score"),
    ("score_std", "± std"),
    ("fit_seconds", "fit s"),
    ("predict_ms_per_1k", "predict ms / 1k rows"),
)


@dataclass(frozen=True)
class TrialPoint:
    """One trial of a study: its number, objective value (None unless complete) and state."""

    number: int
    value: float | None
    state: str = "COMPLETE"


@dataclass(frozen=True)
class PlotArtifact:
    name: str
    ref: ArtifactRef


def history_from_study(study: Any) -> list[TrialPoint]:
    """Trial points of an Optuna study (any state). Only complete trials carry a value: a
    pruned trial's is its first folds' score, not comparable with the others; a trial the
    budget cut before any score counts as interrupted, as in the job's result."""
    points = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name
        if state == "FAIL" and str(trial.user_attrs.get("error", "")).startswith(INTERRUPTED):
            state = "INTERRUPTED"
        value = trial.value if state == "COMPLETE" and trial.values else None
        points.append(TrialPoint(trial.number, value, state))
    return points


def optimization_history_html(
    trials: Sequence[TrialPoint], *, metric: str, higher_is_better: bool
) -> str:
    complete = sorted(
        (t for t in trials if t.value is not None and math.isfinite(t.value)),
        key=lambda t: t.number,
    )
    # complete trials have a value
    points = [(float(t.number), float(t.value)) for t in complete]  # type: ignore[arg-type]
    best: list[tuple[float, float]] = []
    for x, y in points:
        if not best or (y > best[-1][1] if higher_is_better else y < best[-1][1]):
            best.append((x, y))
        else:
            best.append((x, best[-1][1]))
    svg = _svg.scatter_with_line(
        points, best, title="Optimization history", x_label="trial", y_label=metric
    )
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state] = states.get(trial.state, 0) + 1
    summary = ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items()))
    best_text = f"best {metric}: {_svg.fmt(best[-1][1])}" if best else "no completed trial"
    return _page("Optimization history", svg, f"<p>{escape(summary)}; {escape(best_text)}</p>")


def score_over_time_html(
    points: Sequence[Mapping[str, Any]], *, metric: str, higher_is_better: bool, elapsed_s: float
) -> str:
    """The score-over-time curve: the search's best CV score so far (a step line held to the
    end of the search) and the greedy ensemble's score after each layer, against seconds
    since the job started. ``points`` are mappings with ``elapsed_s``, ``score``, ``series``
    ("search" or "ensemble"), ``stack_level`` and ``trial``."""
    search = sorted(
        (p for p in points if p.get("series") == "search" and _finite(p.get("score"))),
        key=lambda p: float(p["elapsed_s"]),
    )
    ensemble = sorted(
        (p for p in points if p.get("series") == "ensemble" and _finite(p.get("score"))),
        key=lambda p: float(p["elapsed_s"]),
    )
    steps: list[tuple[float, float]] = []
    for p in search:
        x, y = float(p["elapsed_s"]), float(p["score"])
        if steps:
            steps.append((x, steps[-1][1]))  # held until the next improvement
        steps.append((x, y))
    if steps and ensemble:
        steps.append((float(ensemble[0]["elapsed_s"]), steps[-1][1]))
    layers = [(float(p["elapsed_s"]), float(p["score"])) for p in ensemble]
    svg = _svg.lines(
        [
            ("search: best trial so far", "#4c78a8", steps),
            ("ensemble after each layer", "#e45756", layers),
        ],
        title="Score over time",
        x_label="seconds since the job started",
        y_label=f"{metric} ({'higher' if higher_is_better else 'lower'} is better)",
    )
    rows = "".join(
        f"<tr><td>{_svg.fmt(float(p['elapsed_s']))}</td><td>{escape(str(p.get('series', '')))}"
        f"</td><td>{int(p.get('stack_level') or 0)}</td>"
        f"<td>{'' if p.get('trial') is None else int(p['trial'])}</td>"
        f"<td>{_svg.fmt(float(p['score']))}</td></tr>"
        for p in [*search, *ensemble]
    )
    table = (
        "<table><thead><tr><th>seconds</th><th>series</th><th>layers</th><th>trial</th>"
        f"<th>{escape(metric)}</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    last = search[-1] if search else None
    hint = ""
    if last is not None and elapsed_s > 0:
        share = float(last["elapsed_s"]) / elapsed_s
        hint = (
            f"<p>the search's last improvement came at {_svg.fmt(float(last['elapsed_s']))} s of "
            f"{_svg.fmt(elapsed_s)} s ({share:.0%}): "
            + (
                "it was still improving late, so a larger budget will likely help"
                if share > 0.6
                else "it had levelled off, so a larger budget may add little"
            )
            + "</p>"
        )
    return _page("Score over time", svg, hint + table)


def leaderboard_html(
    entries: Sequence[Mapping[str, Any]], *, metric: str, higher_is_better: bool, top: int = 20
) -> str:
    """Entries are mappings with any of the keys in :data:`LEADERBOARD_COLUMNS` (rank,
    number, pipeline, score, score_std, fit_seconds, predict_ms_per_1k), best first."""
    shown = [e for e in entries if _finite(e.get("score"))][:top]
    labels = [f"{_entry_name(e)} {e.get('pipeline', '')}".strip() for e in shown]
    scores = [float(e["score"]) for e in shown]
    stds = [float(e.get("score_std", 0.0) or 0.0) for e in shown]
    direction = "higher is better" if higher_is_better else "lower is better"
    svg = _svg.horizontal_bars(
        labels, scores, title="Leaderboard", x_label=f"{metric} ({direction})", errors=stds
    )
    header = "".join(f"<th>{escape(title)}</th>" for _, title in LEADERBOARD_COLUMNS)
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{escape(_cell(e.get(key)))}</td>" for key, _ in LEADERBOARD_COLUMNS)
        + "</tr>"
        for e in entries
    )
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
    return _page("Leaderboard", svg, table)


def importance_html(result: ImportanceResult, *, top: int = 30) -> str:
    shown = result.features[:top]
    unit = (
        "mean |SHAP contribution|"
        if result.method == "shap"
        else f"score drop when shuffled ({result.metric})"
    )
    svg = _svg.horizontal_bars(
        [f.feature for f in shown],
        [f.importance for f in shown],
        title=f"Feature importance ({result.method})",
        x_label=unit,
        errors=[f.importance_std for f in shown],
    )
    note = f"<p>{len(result.features)} features; top {len(shown)} shown</p>"
    return _page("Feature importance", svg, note)


def write_plots(
    store: ArtifactStore,
    prefix: str,
    *,
    metric: str,
    higher_is_better: bool,
    history: Sequence[TrialPoint] | None = None,
    leaderboard: Sequence[Mapping[str, Any]] | None = None,
    importance: ImportanceResult | None = None,
    score_curve: Sequence[Mapping[str, Any]] | None = None,
    elapsed_s: float = 0.0,
) -> list[PlotArtifact]:
    """Publish the plots given (``<prefix>/<name>.html``) and return their refs, named
    ``optimization_history``, ``leaderboard``, ``feature_importance`` and
    ``score_over_time``."""
    pages: list[tuple[str, str]] = []
    if history is not None:
        pages.append(
            (
                "optimization_history",
                optimization_history_html(
                    history, metric=metric, higher_is_better=higher_is_better
                ),
            )
        )
    if leaderboard is not None:
        pages.append(
            (
                "leaderboard",
                leaderboard_html(leaderboard, metric=metric, higher_is_better=higher_is_better),
            )
        )
    if importance is not None:
        pages.append(("feature_importance", importance_html(importance)))
    if score_curve:
        pages.append(
            (
                "score_over_time",
                score_over_time_html(
                    score_curve,
                    metric=metric,
                    higher_is_better=higher_is_better,
                    elapsed_s=elapsed_s,
                ),
            )
        )
    base = prefix.rstrip("/")
    return [
        PlotArtifact(name, store.put_bytes(f"{base}/{name}.html", page.encode(), HTML_METADATA))
        for name, page in pages
    ]


def _entry_name(entry: Mapping[str, Any]) -> str:
    number = entry.get("number", "?")
    if not isinstance(number, int) or number >= 0:
        return f"#{number}"
    # -2: the ensemble; -(100 * layer + i): a stacked layer's model (automl.stack)
    return "ensemble" if number == -2 else f"L{-number // 100} m{-number % 100}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return _svg.fmt(value)
    return str(value)


def _page(title: str, svg: str, extra: str) -> str:
    style = (
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin-top:12px}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{style}</style></head>"
        f"<body><h1>{escape(title)}</h1>{svg}{extra}</body></html>\n"
    )

"""The console's pages. Each handler is a few read calls of the services with the signed-in
person's token, shaped for display; the console decides nothing itself."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as trainer_pb
from atlas_core.console import views
from atlas_core.console.clients import ClientPool, Clients
from atlas_core.console.config import ConsoleSettings
from atlas_core.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas_core.reasons import SharedReason
from atlas_core.storage import ArtifactStore
from atlas_core.web import WebKit

T = TypeVar("T")
# Windows of the latency and error charts, in seconds.
STAT_WINDOWS = ((60.0, "1 min"), (900.0, "15 min"), (3600.0, "1 h"))
# Plot artifacts are self-contained HTML (inline SVG and style, no script): shown in a
# sandboxed frame of the console's own origin, with no script allowed.
PLOT_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-ancestors 'self'; sandbox"
    ),
    "x-frame-options": "SAMEORIGIN",
    "cache-control": "private, max-age=3600",
}
# A readable graph: a sample of each node's children, and a bound on the whole walk.
LINEAGE_CHILDREN, LINEAGE_NODES = 10, 150
SIGNIN_HINT = (
    "The bearer token your administrator gave you; for a suite started with atlas up, "
    "atlas console --show-token prints it. You see what this token may read."
)
PLOT_TYPES = {"text/html": "text/html; charset=utf-8", "image/png": "image/png"}


def optional(call: Callable[[], T]) -> T | None:
    """A read whose absence is normal (no quality data yet, no report yet): None then."""
    try:
        return call()
    except (NotFound, FailedPrecondition):
        return None


def trial_name(trial: trainer_pb.Trial) -> str:
    return "ensemble" if trial.number < 0 else f"trial {trial.number}"


class Pages:
    def __init__(
        self, kit: WebKit, pool: ClientPool, store: ArtifactStore, settings: ConsoleSettings
    ) -> None:
        self.kit = kit
        self.pool = pool
        self.store = store
        self.settings = settings
        env = kit.templates.env
        env.globals.update(
            enum=views.enum_name,
            parent_link=views.parent_link,
            job_link=views.job_link,
            lineage_href=views.lineage_href,
            trial_name=trial_name,
            signin_hint=SIGNIN_HINT,
        )
        env.filters.update(
            when=views.when,
            took=views.took,
            took_until=views.took_until,
            num=views.num,
            pct=views.pct,
        )

    def clients(self, request: Request) -> Clients:
        return self.pool.get(self.kit.session(request).token)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home),
            Route("/datasets", self.datasets),
            Route("/datasets/{dataset_id}", self.dataset),
            Route("/jobs", self.jobs),
            Route("/jobs/{job_id}", self.job),
            Route("/jobs/{job_id}/progress", self.job_progress),
            Route("/jobs/{job_id}/plots/{name}", self.plot),
            Route("/models", self.models),
            Route("/models/{name}", self.model),
            Route("/endpoints", self.endpoints),
            Route("/endpoints/{name}", self.endpoint),
            Route("/lineage", self.lineage),
        ]

    def render(self, request: Request, template: str, **context: Any) -> Response:
        context.setdefault("section", template.split("_")[0].removesuffix(".html"))
        return self.kit.render(request, template, context)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/jobs", status_code=303)

    # ---- datasets ------------------------------------------------------------------------

    async def datasets(self, request: Request) -> Response:
        found = await run_in_threadpool(self.clients(request).data.list_datasets)
        found.sort(key=lambda d: (d.name, d.ref.version))
        return self.render(request, "datasets.html", datasets=found)

    async def dataset(self, request: Request) -> Response:
        dataset_id = request.path_params["dataset_id"]
        version = _int(request.query_params.get("version"))
        data = self.clients(request).data
        found = await run_in_threadpool(data.get_dataset, dataset_id, version)
        meta = found.meta_features if found.HasField("meta_features") else None
        return self.render(
            request, "datasets_one.html", section="datasets", dataset=found, meta=meta
        )

    # ---- training jobs -------------------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        found = await run_in_threadpool(self.clients(request).trainer.list)
        found.sort(key=lambda j: j.status.create_time.ToNanoseconds(), reverse=True)
        return self.render(request, "jobs.html", jobs=found)

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        trainer = self.clients(request).trainer

        def load() -> dict[str, Any]:
            job = trainer.get(job_id)
            board = optional(lambda: trainer.leaderboard(job_id, limit=50))
            done = job.status.state == common_pb2.JOB_STATE_SUCCEEDED
            report = optional(lambda: trainer.report(job_id)) if done else None
            return {
                "job": job,
                "board": board,
                "report": report,
                "importance_chart": _importance_chart(report),
            }

        context = await run_in_threadpool(load)
        return self.render(
            request, "jobs_one.html", section="jobs", **context, **self._poll(context["job"])
        )

    async def job_progress(self, request: Request) -> Response:
        """The live part of a job's page, polled by htmx until the job ends."""
        job_id = request.path_params["job_id"]
        trainer = self.clients(request).trainer

        def load() -> dict[str, Any]:
            job = trainer.get(job_id)
            return {"job": job, "board": optional(lambda: trainer.leaderboard(job_id, limit=50))}

        context = await run_in_threadpool(load)
        response = self.render(request, "_job_live.html", **context, **self._poll(context["job"]))
        if context["job"].status.state in views.TERMINAL_JOB_STATES:
            # The report (and its plots) exist now: reload the whole page once.
            response.headers["HX-Refresh"] = "true"
        return response

    def _poll(self, job: trainer_pb.TrainingJob) -> dict[str, Any]:
        running = job.status.state not in views.TERMINAL_JOB_STATES
        return {"poll": f"every {self.settings.poll_s:g}s" if running else ""}

    async def plot(self, request: Request) -> Response:
        """A plot of the job's report, read from the object store by the console: only the
        artifacts the report names are served, never an arbitrary key."""
        job_id, name = request.path_params["job_id"], request.path_params["name"]
        trainer = self.clients(request).trainer

        def load() -> tuple[bytes, str]:
            report = trainer.report(job_id)
            plot = next((p for p in report.plots if p.name == name), None)
            if plot is None:
                raise NotFound(f"job {job_id} has no plot {name!r}", reason=SharedReason.NOT_FOUND)
            kind = PLOT_TYPES.get(plot.artifact.media_type or "text/html")
            if kind is None:
                raise NotFound(f"plot {name!r} is not HTML or PNG", reason=SharedReason.NOT_FOUND)
            key = self.store.key_for_uri(plot.artifact.uri)
            return self.store.get_bytes(key), kind

        body, kind = await run_in_threadpool(load)
        return Response(body, media_type=kind, headers=PLOT_HEADERS)

    # ---- models --------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        found = await run_in_threadpool(self.clients(request).serving.list_models)
        return self.render(request, "models.html", models=found)

    async def model(self, request: Request) -> Response:
        name = request.path_params["name"]
        serving = self.clients(request).serving
        versions = await run_in_threadpool(serving.list_versions, name)
        if not versions:
            raise NotFound(f"no model named {name!r}", reason=SharedReason.NOT_FOUND)
        versions.sort(key=lambda v: v.ref.version, reverse=True)
        return self.render(
            request, "models_one.html", section="models", name=name, versions=versions
        )

    # ---- endpoints -----------------------------------------------------------------------

    async def endpoints(self, request: Request) -> Response:
        found = await run_in_threadpool(self.clients(request).serving.list_endpoints)
        return self.render(request, "endpoints.html", endpoints=found)

    async def endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        serving = self.clients(request).serving

        def load() -> dict[str, Any]:
            endpoint = serving.get_endpoint(name)
            by_window = [(label, serving.stats(name, window)) for window, label in STAT_WINDOWS]
            quality = optional(lambda: serving.model_quality(name))
            drift = next(
                (j for j in serving.list_monitoring_jobs(name, limit=20) if j.HasField("report")),
                None,
            )
            return {
                "endpoint": endpoint,
                "stats": by_window[0][1],
                "charts": _stat_charts(by_window),
                "deployments": serving.list_deployments(name)[:10],
                "alerts": serving.alerts(name)[:20],
                "quality": quality,
                "drift": drift,
                "drift_chart": _drift_chart(drift),
            }

        context = await run_in_threadpool(load)
        return self.render(request, "endpoints_one.html", section="endpoints", **context)

    # ---- lineage -------------------------------------------------------------------------

    async def lineage(self, request: Request) -> Response:
        """The lineage graph around any id, walked over every configured service."""
        start = request.query_params.get("id", "").strip()[:500]
        context: dict[str, Any] = {"start": start, "graph": None, "layout": None, "problem": ""}
        if start:
            walker = self.clients(request).lineage()
            try:
                graph = await run_in_threadpool(
                    walker.walk, start, children_limit=LINEAGE_CHILDREN, max_nodes=LINEAGE_NODES
                )
            except (InvalidArgument, NotFound) as exc:
                context["problem"] = exc.message
            else:
                context.update(graph=graph, layout=views.lineage_layout(graph))
        return self.render(request, "lineage.html", section="lineage", **context)


def _stat_charts(by_window: list[tuple[str, list[serving_pb.VariantStats]]]) -> dict[str, Any]:
    """p99 latency and error rate of every variant over each window, as bar charts."""
    latency, errors = [], []
    for label, stats in by_window:
        for s in stats:
            row = f"{s.variant} · {label}"
            latency.append((row, s.p99_ms, f"p99 {s.p99_ms:.1f} ms · p50 {s.p50_ms:.1f} ms"))
            errors.append((row, s.error_rate, views.pct(s.error_rate)))
    return {
        "latency": views.bar_chart(latency),
        "errors": views.bar_chart(
            errors, scale=max([e[1] for e in errors] + [0.05]), warn_above=0.01
        ),
    }


def _importance_chart(report: trainer_pb.TrainingReport | None) -> views.BarChart | None:
    if report is None or not report.feature_importance:
        return None
    top = report.feature_importance[:20]
    return views.bar_chart([(f.feature, f.importance, views.num(f.importance, 3)) for f in top])


def _drift_chart(job: serving_pb.MonitoringJob | None) -> views.BarChart | None:
    if job is None or not job.report.features:
        return None
    features = sorted(job.report.features, key=lambda f: f.psi, reverse=True)
    rows = [
        (f.feature, f.psi if math.isfinite(f.psi) else 0.0, f"PSI {f.psi:.3f}") for f in features
    ]
    tones = ["bad" if f.drifted else "" for f in features]
    return views.bar_chart(rows, tones=tones)


def _int(raw: str | None) -> int:
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0

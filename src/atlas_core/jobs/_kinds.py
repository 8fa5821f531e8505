"""A service's job kinds as a table, and the handlers and runner built from it.

Every service stores a job's spec as JSON (the proto message through ``json_format``, proto
field names) and runs it in a subprocess that parses it back, opens the service's runtime,
calls the work function and closes the runtime. :class:`JobTable` does that once for all of
them; a service's ``jobs.py`` only lists its :class:`JobKind` rows.

Work functions are named by ``"module:function"`` and imported in the job subprocess only, so
the service process never loads what its jobs need (torch, dgl, the AutoML stack). Handlers
carry the service settings with them (``functools.partial``), never inside a stored spec, so
no secret is persisted.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import Engine

from atlas_core.config import JobSettings
from atlas_core.errors import InvalidArgument
from atlas_core.jobs._context import JobContext
from atlas_core.jobs._models import JobHandler
from atlas_core.jobs._runner import JobRunner

log = logging.getLogger("atlas.jobs")

# Keys of a stored spec that are not proto fields start with this (e.g. "_study_name").
EXTRA_PREFIX = "_"


def spec_to_json(message: Message, **extras: Any) -> dict[str, Any]:
    """The stored form of a job spec: ``message`` as JSON with proto field names, plus
    ``extras`` (JSON values the service keeps beside the spec) under ``_<name>`` keys."""
    raw: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    raw.update({EXTRA_PREFIX + name: value for name, value in extras.items()})
    return raw


def spec_from_json(spec_type: type[Message], raw: Mapping[str, Any]) -> Message:
    """Inverse of :func:`spec_to_json` (the extras are left out)."""
    return json_format.ParseDict(
        {k: v for k, v in raw.items() if not k.startswith(EXTRA_PREFIX)}, spec_type()
    )


def spec_extras(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The extras of a stored spec, by name (without the prefix)."""
    return {k[len(EXTRA_PREFIX) :]: v for k, v in raw.items() if k.startswith(EXTRA_PREFIX)}


@dataclass(frozen=True)
class JobKind:
    """One kind of job.

    ``work`` is ``"module:function"``, called as ``function(runtime, ctx, spec, **extras)``
    with the service's runtime (or its settings when the table opens none), the parsed spec
    (the JSON dict itself when ``spec_type`` is None) and the spec's extras; with ``timed``
    it also gets ``started``, the monotonic time the job process began it, so a budget
    counts the imports too. ``resumable`` jobs go back to the queue after a service crash.
    """

    name: str
    work: str
    spec_type: type[Message] | None = None
    resumable: bool = False
    timed: bool = False


@dataclass(frozen=True)
class JobTable:
    """The job kinds of one service.

    ``runtime`` is ``"module:function"`` opening the service's runtime from its settings
    (called with ``migrate=False``; the result has ``close()``); None hands the work the
    settings. ``max_concurrent`` and the runner id ``"<service>-0"`` are the defaults for
    what the service's :class:`~atlas_core.config.JobSettings` leave unset.
    """

    service: str
    kinds: Sequence[JobKind]
    runtime: str | None = None
    max_concurrent: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        names = [k.name for k in self.kinds]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"{self.service} job kinds must be unique, got {names}")
        for path in [k.work for k in self.kinds] + ([self.runtime] if self.runtime else []):
            if path.count(":") != 1:
                raise InvalidArgument(f"{path!r} is not 'module:function'")

    def kind(self, name: str) -> JobKind:
        for kind in self.kinds:
            if kind.name == name:
                return kind
        raise InvalidArgument(f"unknown {self.service} job kind {name!r}")

    def handlers(self, settings: Any) -> dict[str, JobHandler]:
        """One handler per kind, each bound to ``settings`` (picklable: module-level)."""
        return {k.name: functools.partial(run_job, self, k.name, settings) for k in self.kinds}

    def runner(self, engine: Engine, settings: Any, jobs: JobSettings, **options: Any) -> JobRunner:
        """The service's :class:`JobRunner`: its handlers bound to ``settings``, sized by
        ``jobs`` (or this table's defaults); ``options`` go to :class:`JobRunner`."""
        return JobRunner(
            engine,
            self.handlers(settings),
            max_concurrent=jobs.max_concurrent or self.max_concurrent,
            runner_id=jobs.runner_id or f"{self.service}-0",
            **options,
        )

    def submit(
        self, runner: JobRunner, kind: str, spec: Message, request_id: str = "", **extras: Any
    ) -> str:
        """Queue a job of ``kind`` (resumable as the table says); returns its id."""
        return runner.submit(
            kind,
            spec_to_json(spec, **extras),
            request_id=request_id or None,
            resumable=self.kind(kind).resumable,
        )


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), name))


def run_job(
    table: JobTable, kind_name: str, settings: Any, ctx: JobContext, raw: dict[str, Any]
) -> dict[str, Any]:
    """The handler of every kind of every table, run in the job subprocess."""
    started = time.monotonic()
    kind = table.kind(kind_name)
    work = _resolve(kind.work)
    spec = raw if kind.spec_type is None else spec_from_json(kind.spec_type, raw)
    extras = spec_extras(raw)
    if kind.timed:
        extras["started"] = started
    outcome = "done"
    try:
        result: dict[str, Any]
        if table.runtime is None:
            result = work(settings, ctx, spec, **extras)
        else:
            runtime = _resolve(table.runtime)(settings, migrate=False)
            try:
                result = work(runtime, ctx, spec, **extras)
            finally:
                runtime.close()
        return result
    except BaseException as exc:  # the runner records it; this line only adds the timing
        outcome = f"ended by {type(exc).__name__}"
        raise
    finally:
        log.info(
            "%s job %s (%s) %s after %.1f s",
            table.service,
            ctx.job_id,
            kind.name,
            outcome,
            time.monotonic() - started,
        )

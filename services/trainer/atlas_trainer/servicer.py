"""gRPC front end of the trainer: translation only (see convert.py and service.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core import lineage
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import EventType, JobEvent, JobRecord
from atlas_core.rpc import ServiceDef
from atlas_trainer import convert
from atlas_trainer._servicer_reports import ReportRpcs
from atlas_trainer.service import TrainerService

to_thread = asyncio.to_thread
_TRIAL_EVENTS = set(convert.EVENT_TYPES)


def _inner_event(event: JobEvent, types: Any) -> dict[str, Any] | None:
    data = event.payload.get("data") or event.payload
    inner = data.get("event") if isinstance(data, dict) else None
    if isinstance(inner, dict) and inner.get("type") in types:
        return inner
    return None


def _trial_event(event: JobEvent) -> dict[str, Any] | None:
    return _inner_event(event, _TRIAL_EVENTS)


class TrainerServicer(ReportRpcs, pb_grpc.TrainerServiceServicer):
    def __init__(self, service: TrainerService) -> None:
        self.svc = service

    def _record(self, job_id: str) -> JobRecord:
        if not job_id:
            raise InvalidArgument("job_id is empty", reason="EMPTY_JOB_ID")
        return self.svc.jobs.get(job_id)

    def _job(self, job_id: str) -> pb.TrainingJob:
        record = self._record(job_id)
        best, elapsed, remaining = None, None, None
        if not record.finished:
            for event in reversed(self.svc.jobs.events(job_id)):
                trial = _trial_event(event)
                if trial is None:
                    continue
                elapsed = elapsed if elapsed is not None else trial.get("elapsed_s")
                remaining = remaining if remaining is not None else trial.get("remaining_s")
                if trial.get("type") == "new_best":
                    best = trial
                    break
        return convert.job_to_pb(record, best, elapsed, remaining)

    async def SubmitTrainingJob(self, request: Any, context: Any) -> Any:
        job_id = await to_thread(self.svc.submit, request.spec, request.request_id)
        return pb.SubmitTrainingJobResponse(job=await to_thread(self._job, job_id))

    async def GetLineage(self, request: Any, context: Any) -> Any:
        view = await to_thread(
            self.svc.lineage, request.id, request.children_limit, request.ancestor_depth
        )
        return pb.GetLineageResponse(
            lineage=lineage.to_pb(view), ancestors=[lineage.to_pb(a) for a in view.ancestors]
        )

    async def GetTrainingJob(self, request: Any, context: Any) -> Any:
        return pb.GetTrainingJobResponse(job=await to_thread(self._job, request.job_id))

    async def WatchTrainingJob(
        self, request: Any, context: Any
    ) -> AsyncIterator[pb.WatchTrainingJobResponse]:
        record = await to_thread(self._record, request.job_id)
        yield pb.WatchTrainingJobResponse(
            event_type=pb.TRAINING_EVENT_TYPE_STATUS, status=pc.job_status(record)
        )
        best: pb.Trial | None = None
        async for event in self.svc.jobs.awatch(request.job_id):
            trial = _trial_event(event)
            if trial is not None:
                msg = pb.WatchTrainingJobResponse(
                    event_type=convert.EVENT_TYPES[trial["type"]],
                    trial=convert.trial_to_pb(trial),
                    event_time=pc.dt_to_ts(event.time),
                )
                if trial["type"] == "new_best":
                    best = convert.trial_to_pb(trial)
                if best is not None:
                    msg.best_so_far.CopyFrom(best)
                for field, key in (("elapsed", "elapsed_s"), ("remaining", "remaining_s")):
                    d = convert.seconds(trial.get(key))
                    if d is not None:
                        getattr(msg, field).CopyFrom(d)
                yield msg
            elif (epoch := _inner_event(event, convert.EPOCH_EVENT_TYPES)) is not None:
                record = await to_thread(self._record, request.job_id)
                yield pb.WatchTrainingJobResponse(
                    event_type=convert.EPOCH_EVENT_TYPES[epoch["type"]],
                    status=pc.job_status(record),
                    epoch=int(epoch.get("epoch") or 0),
                    epoch_metrics={k: float(v) for k, v in (epoch.get("metrics") or {}).items()},
                    event_time=pc.dt_to_ts(event.time),
                )
            elif event.type is not EventType.PROGRESS:
                record = await to_thread(self._record, request.job_id)
                yield pb.WatchTrainingJobResponse(
                    event_type=pb.TRAINING_EVENT_TYPE_STATUS,
                    status=pc.job_status(record),
                    event_time=pc.dt_to_ts(event.time),
                )

    async def CancelTrainingJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self._record, request.job_id)
        if not record.finished:
            await to_thread(self.svc.jobs.cancel, request.job_id)
        return pb.CancelTrainingJobResponse(job=await to_thread(self._job, request.job_id))

    async def ListTrainingJobs(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        states = {pc.JOB_STATES_FROM_PB[s] for s in request.states if s in pc.JOB_STATES_FROM_PB}

        def collect() -> tuple[list[pb.TrainingJob], int]:
            records = [r for r in self.svc.jobs.list_all() if (not states or r.state in states)]
            if request.dataset.dataset_id:
                records = [
                    r
                    for r in records
                    if (r.spec.get("dataset") or {}).get("dataset_id") == request.dataset.dataset_id
                ]
            if request.labels:
                records = [
                    r
                    for r in records
                    if all(
                        (r.spec.get("labels") or {}).get(k) == v for k, v in request.labels.items()
                    )
                ]
            records.sort(key=lambda r: r.created_at, reverse=True)
            page = records[offset : offset + limit]
            return [convert.job_to_pb(r) for r in page], len(records)

        jobs, total = await to_thread(collect)
        page = pc.page_response(offset, limit, offset + limit < total, total, scope=scope)
        return pb.ListTrainingJobsResponse(jobs=jobs, page=page)

    async def _rows(self, job_id: str) -> tuple[list[dict[str, Any]], str, bool]:
        record = await to_thread(self._record, job_id)
        return await to_thread(self.svc.leaderboard, record)

    async def GetLeaderboard(self, request: Any, context: Any) -> Any:
        rows, metric, higher = await self._rows(request.job_id)
        ranked = [r for r in rows if r.get("state") == "COMPLETE"]
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        return pb.GetLeaderboardResponse(
            entries=[convert.trial_to_pb(r) for r in ranked[offset : offset + limit]],
            metric=metric,
            higher_is_better=higher,
            page=pc.page_response(
                offset, limit, offset + limit < len(ranked), len(ranked), scope=scope
            ),
        )

    async def ListTrials(self, request: Any, context: Any) -> Any:
        rows, _, _ = await self._rows(request.job_id)
        wanted = {
            convert.TRIAL_STATES_FROM_PB[s]
            for s in request.states
            if s in convert.TRIAL_STATES_FROM_PB
        }
        rows = sorted(
            (
                r
                for r in rows
                if r.get("number", 0) >= 0 and (not wanted or r.get("state") in wanted)
            ),
            key=lambda r: r.get("number", 0),
        )
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        return pb.ListTrialsResponse(
            trials=[convert.trial_to_pb(r) for r in rows[offset : offset + limit]],
            page=pc.page_response(
                offset, limit, offset + limit < len(rows), len(rows), scope=scope
            ),
        )


def trainer_service_def(service: TrainerService) -> ServiceDef:
    return ServiceDef(
        TrainerServicer(service),
        pb_grpc.add_TrainerServiceServicer_to_server,
        pb.DESCRIPTOR.services_by_name["TrainerService"].full_name,
        on_stop=service.stop,
    )

"""Python client of the trainer service: submit AutoML jobs, follow them, read results."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.clients._base import ServiceClient, mapped_errors, mapped_stream
from atlas_core.rpc.channel import ClientSettings

TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


def automl_spec(
    *,
    target: str = "",
    dataset: tuple[str, int] | None = None,
    artifact_uri: str = "",
    wall_seconds: float | None = None,
    max_trials: int = 0,
    seed: int = 0,
    strategy: pb.SearchStrategy = pb.SEARCH_STRATEGY_HYPERBAND_TPE,
    cpus: float = 0,
    register: str = "",
    alias: str = "",
    replaces: common_pb2.ModelRef | None = None,
    column_roles: dict[str, str] | None = None,
    stacking: pb.StackingMode = pb.STACKING_MODE_UNSPECIFIED,
    stack_levels: int = 0,
) -> pb.TrainingJobSpec:
    """A TrainingJobSpec for the common case. An empty ``target`` means the dataset's label
    column; ``register`` names the serving model the finished bundle becomes a version of
    (under ``alias``, "candidate" by default); ``replaces`` is the model version it replaces
    (warm start and lineage); ``column_roles`` overrides inferred column roles (column ->
    role, e.g. ``{"created_at": "datetime"}``); ``stacking`` / ``stack_levels`` set multi-layer
    stacking (AUTO by default). ``wall_seconds`` None means the trainer's
    default budget; any number is sent, so 0 or less is refused by the trainer rather than
    read as "default"."""
    spec = pb.TrainingJobSpec(
        target_column=target, seed=seed, automl=pb.AutoMlSpec(strategy=strategy)
    )
    if dataset:
        spec.dataset.CopyFrom(common_pb2.DatasetRef(dataset_id=dataset[0], version=dataset[1]))
    if artifact_uri:
        spec.dataset_artifact.CopyFrom(common_pb2.ArtifactRef(uri=artifact_uri))
    if wall_seconds is not None:
        d = duration_pb2.Duration()
        d.FromMicroseconds(int(wall_seconds * 1e6))
        spec.budget.wall_time.CopyFrom(d)
    if max_trials:
        spec.budget.max_trials = max_trials
    if cpus:
        spec.resources.cpus = cpus
    if register:
        spec.register.CopyFrom(pb.RegisterModelOptions(model_name=register, alias=alias))
    if replaces is not None:
        spec.replaces_model.CopyFrom(replaces)
    if column_roles:
        spec.automl.column_roles.update(column_roles)
    spec.automl.stacking = stacking
    spec.automl.stack_levels = stack_levels
    return spec


class TrainerClient(ServiceClient):
    lineage_request = pb.GetLineageRequest

    def __init__(self, settings: ClientSettings, *, timeout: float = 120.0) -> None:
        super().__init__(settings, timeout=timeout)
        self.stub = pb_grpc.TrainerServiceStub(self._channel)

    @mapped_errors
    def submit(self, spec: pb.TrainingJobSpec, *, request_id: str = "") -> pb.TrainingJob:
        return self.stub.SubmitTrainingJob(
            pb.SubmitTrainingJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def get(self, job_id: str) -> pb.TrainingJob:
        return self.stub.GetTrainingJob(
            pb.GetTrainingJobRequest(job_id=job_id), timeout=self.timeout
        ).job

    @mapped_errors
    def cancel(self, job_id: str) -> pb.TrainingJob:
        return self.stub.CancelTrainingJob(
            pb.CancelTrainingJobRequest(job_id=job_id), timeout=self.timeout
        ).job

    @mapped_errors
    def list(self) -> list[pb.TrainingJob]:
        return list(
            self.stub.ListTrainingJobs(
                pb.ListTrainingJobsRequest(page=common_pb2.PageRequest(page_size=1000)),
                timeout=self.timeout,
            ).jobs
        )

    @mapped_errors
    def leaderboard(self, job_id: str, limit: int = 100) -> pb.GetLeaderboardResponse:
        return self.stub.GetLeaderboard(
            pb.GetLeaderboardRequest(job_id=job_id, page=common_pb2.PageRequest(page_size=limit)),
            timeout=self.timeout,
        )

    @mapped_errors
    def report(self, job_id: str) -> pb.TrainingReport:
        return self.stub.GetTrainingReport(
            pb.GetTrainingReportRequest(job_id=job_id), timeout=self.timeout
        ).report

    def watch(self, job_id: str) -> Iterator[pb.WatchTrainingJobResponse]:
        yield from mapped_stream(
            self.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id))
        )

    def wait(self, job_id: str) -> pb.TrainingJob:
        """Follow the job to its end and return it."""
        for event in self.watch(job_id):
            if event.event_type == pb.TRAINING_EVENT_TYPE_STATUS and event.status.state in TERMINAL:
                break
        return self.get(job_id)

"""Python client of the graph service (the SDK): graphs, partitionings, id translation and
graph jobs (import, generate, partition, train, infer), with numpy in and out for ids."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas.graph.v1 import graph_service_pb2_grpc as pb_grpc
from atlas_core.clients._base import ServiceClient, mapped_errors, mapped_stream
from atlas_core.errors import DeadlineExceeded
from atlas_core.rpc.channel import ClientSettings

TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}
_KINDS = {"node": pb.ID_KIND_NODE, "edge": pb.ID_KIND_EDGE}


@dataclass(frozen=True)
class Translation:
    """TranslateIds decoded: ``new_ids``, ``partitions``, ``local_ids`` as int64 arrays and
    ``originals`` (int64 array or list of str) in request order."""

    new_ids: np.ndarray
    partitions: np.ndarray
    local_ids: np.ndarray
    originals: np.ndarray | list[str]


class GraphClient(ServiceClient):
    lineage_request = pb.GetLineageRequest

    def __init__(self, settings: ClientSettings, *, timeout: float = 60.0) -> None:
        super().__init__(settings, timeout=timeout)
        self.stub = pb_grpc.GraphServiceStub(self._channel)

    # -- jobs -----------------------------------------------------------------------------

    @mapped_errors
    def submit(self, *, request_id: str = "", **spec: Any) -> pb.GraphJob:
        """Submit one job: ``import_graph=``, ``generate_graph=``, ``partition_graph=``,
        ``train=`` or ``infer=`` with its spec message."""
        return self.stub.SubmitGraphJob(
            pb.SubmitGraphJobRequest(request_id=request_id, **spec), timeout=self.timeout
        ).job

    def generate(self, spec: pb.GenerateGraphSpec, *, request_id: str = "") -> pb.GraphJob:
        return self.submit(generate_graph=spec, request_id=request_id)

    def import_graph(self, spec: pb.ImportGraphSpec, *, request_id: str = "") -> pb.GraphJob:
        return self.submit(import_graph=spec, request_id=request_id)

    def partition(self, spec: pb.PartitionGraphSpec, *, request_id: str = "") -> pb.GraphJob:
        return self.submit(partition_graph=spec, request_id=request_id)

    def train(self, spec: pb.TrainGraphSpec, *, request_id: str = "") -> pb.GraphJob:
        return self.submit(train=spec, request_id=request_id)

    def infer(self, spec: pb.InferGraphSpec, *, request_id: str = "") -> pb.GraphJob:
        return self.submit(infer=spec, request_id=request_id)

    @mapped_errors
    def get_job(self, job_id: str) -> pb.GraphJob:
        return self.stub.GetGraphJob(pb.GetGraphJobRequest(job_id=job_id), timeout=self.timeout).job

    @mapped_errors
    def cancel_job(self, job_id: str, *, request_id: str = "") -> pb.GraphJob:
        return self.stub.CancelGraphJob(
            pb.CancelGraphJobRequest(job_id=job_id, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def list_jobs(
        self, graph_id: str = "", kind: pb.GraphJobKind = pb.GRAPH_JOB_KIND_UNSPECIFIED
    ) -> list[pb.GraphJob]:
        return list(
            self.stub.ListGraphJobs(
                pb.ListGraphJobsRequest(
                    graph_id=graph_id, kind=kind, page=common_pb2.PageRequest(page_size=1000)
                ),
                timeout=self.timeout,
            ).jobs
        )

    def watch(self, job_id: str) -> Iterator[pb.WatchGraphJobResponse]:
        """Progress events (job, epoch, metrics), ending after the terminal state."""
        yield from mapped_stream(self.stub.WatchGraphJob(pb.WatchGraphJobRequest(job_id=job_id)))

    def wait_job(self, job_id: str, timeout: float = 600.0) -> pb.GraphJob:
        """Follow the job until it ends; returns its final state (check status.state)."""
        deadline = time.monotonic() + timeout
        job = self.get_job(job_id)
        for event in self.watch(job_id):
            job = event.job
            if job.status.state in TERMINAL or time.monotonic() > deadline:
                break
        if job.status.state not in TERMINAL:
            raise DeadlineExceeded(f"graph job {job_id} still running after {timeout:.0f}s")
        return job

    # -- graphs and partitionings ---------------------------------------------------------

    @mapped_errors
    def get_graph(self, graph_id: str) -> pb.Graph:
        return self.stub.GetGraph(pb.GetGraphRequest(graph_id=graph_id), timeout=self.timeout).graph

    @mapped_errors
    def list_graphs(self, name_prefix: str = "") -> list[pb.Graph]:
        return list(
            self.stub.ListGraphs(
                pb.ListGraphsRequest(
                    name_prefix=name_prefix, page=common_pb2.PageRequest(page_size=1000)
                ),
                timeout=self.timeout,
            ).graphs
        )

    @mapped_errors
    def delete_graph(self, graph_id: str, *, request_id: str = "") -> int:
        return self.stub.DeleteGraph(
            pb.DeleteGraphRequest(graph_id=graph_id, request_id=request_id), timeout=self.timeout
        ).deleted_partitionings

    @mapped_errors
    def estimate_partitioning(self, spec: pb.PartitionGraphSpec) -> pb.PartitionEstimate:
        return self.stub.EstimatePartitioning(
            pb.EstimatePartitioningRequest(spec=spec), timeout=self.timeout
        ).estimate

    @mapped_errors
    def get_partitioning(self, graph_id: str, partitioning_id: str) -> pb.Partitioning:
        return self.stub.GetPartitioning(
            pb.GetPartitioningRequest(
                ref=common_pb2.GraphRef(graph_id=graph_id, partitioning_id=partitioning_id)
            ),
            timeout=self.timeout,
        ).partitioning

    @mapped_errors
    def list_partitionings(self, graph_id: str) -> list[pb.Partitioning]:
        return list(
            self.stub.ListPartitionings(
                pb.ListPartitioningsRequest(
                    graph_id=graph_id, page=common_pb2.PageRequest(page_size=1000)
                ),
                timeout=self.timeout,
            ).partitionings
        )

    @mapped_errors
    def translate(
        self,
        graph_id: str,
        partitioning_id: str,
        ids: Sequence[int] | Sequence[str] | np.ndarray,
        *,
        kind: str = "node",
        to_original: bool = False,
    ) -> Translation:
        """Original -> new ids (default) or new -> original (``to_original``)."""
        values = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
        strings = bool(values) and isinstance(values[0], str)
        resp = self.stub.TranslateIds(
            pb.TranslateIdsRequest(
                ref=common_pb2.GraphRef(graph_id=graph_id, partitioning_id=partitioning_id),
                kind=_KINDS[kind],
                direction=pb.TRANSLATE_DIRECTION_NEW_TO_ORIGINAL
                if to_original
                else pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW,
                string_ids=values if strings else [],
                int64_ids=[] if strings else values,
            ),
            timeout=self.timeout,
        )
        originals: np.ndarray | list[str]
        if not to_original:
            originals = values if strings else np.asarray(values, dtype=np.int64)
        elif resp.original_string_ids:
            originals = list(resp.original_string_ids)
        else:
            originals = np.asarray(resp.original_int64_ids, dtype=np.int64)
        return Translation(
            np.asarray(resp.new_ids, dtype=np.int64),
            np.asarray(resp.partitions, dtype=np.int64),
            np.asarray(resp.local_ids, dtype=np.int64),
            originals,
        )

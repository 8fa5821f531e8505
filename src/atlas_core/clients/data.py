"""Python client of the data service (the SDK): feature groups, ingest, online reads,
datasets and jobs, with numpy in and out."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas.data.v1 import online_service_pb2 as online_pb
from atlas.data.v1 import online_service_pb2_grpc as online_grpc
from atlas_core.clients._base import ServiceClient, mapped_errors, mapped_stream
from atlas_core.errors import DeadlineExceeded
from atlas_core.rpc.channel import ClientSettings, connect_sync

TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


@dataclass(frozen=True)
class Features:
    """GetFeatures decoded: ``float32`` is ``[n, width]`` (NaN where missing)."""

    layout: pb.RecordLayout
    found: np.ndarray
    event_time_us: np.ndarray
    float32: np.ndarray
    int64: np.ndarray
    float64: np.ndarray
    strings: list[str]

    def column(self, name: str) -> np.ndarray:
        """Values of one float32/vector feature for every requested entity."""
        for slot in self.layout.slots:
            if slot.name == name and slot.block == pb.VALUE_BLOCK_FLOAT32:
                return (
                    self.float32[:, slot.offset : slot.offset + slot.dims].squeeze(-1)
                    if slot.dims == 1
                    else self.float32[:, slot.offset : slot.offset + slot.dims]
                )
        raise KeyError(name)


class DataClient(ServiceClient):
    """With ``settings.read_target`` set, online reads go to that OnlineFeatureService
    endpoint (the native online reader); everything else to ``settings.target``."""

    lineage_request = pb.GetLineageRequest

    def __init__(self, settings: ClientSettings, *, timeout: float = 60.0) -> None:
        super().__init__(settings, timeout=timeout)
        self.stub = pb_grpc.DataServiceStub(self._channel)
        self._read_channel = (
            connect_sync(settings.model_copy(update={"target": settings.read_target}))
            if settings.read_target
            else None
        )
        self._reader = (
            online_grpc.OnlineFeatureServiceStub(self._read_channel)
            if self._read_channel is not None
            else None
        )

    def close(self) -> None:
        if self._read_channel is not None:
            self._read_channel.close()
        super().close()

    # -- feature groups -------------------------------------------------------------------

    @mapped_errors
    def create_feature_group(
        self, spec: pb.FeatureGroupSpec, *, new_version: bool = False, request_id: str = ""
    ) -> pb.FeatureGroup:
        return self.stub.CreateFeatureGroup(
            pb.CreateFeatureGroupRequest(spec=spec, new_version=new_version, request_id=request_id),
            timeout=self.timeout,
        ).feature_group

    @mapped_errors
    def get_feature_group(self, name: str, version: int = 0) -> pb.FeatureGroup:
        return self.stub.GetFeatureGroup(
            pb.GetFeatureGroupRequest(ref=common_pb2.FeatureGroupRef(name=name, version=version)),
            timeout=self.timeout,
        ).feature_group

    @mapped_errors
    def list_feature_groups(self, name_prefix: str = "") -> list[pb.FeatureGroup]:
        return list(
            self.stub.ListFeatureGroups(
                pb.ListFeatureGroupsRequest(
                    name_prefix=name_prefix, page=common_pb2.PageRequest(page_size=1000)
                ),
                timeout=self.timeout,
            ).feature_groups
        )

    # -- ingest and reads -----------------------------------------------------------------

    @mapped_errors
    def put_records(
        self,
        group: str,
        records: Iterable[pb.FeatureRecord],
        *,
        batch_size: int = 500,
        request_id: str = "",
    ) -> pb.PutRecordsResponse:
        """All-or-nothing over the whole iterable (see WriteRecords for per-batch acks)."""

        def stream() -> Iterator[pb.PutRecordsRequest]:
            batch: list[pb.FeatureRecord] = []
            for record in records:
                batch.append(record)
                if len(batch) == batch_size:
                    yield pb.PutRecordsRequest(
                        feature_group=common_pb2.FeatureGroupRef(name=group),
                        records=batch,
                        request_id=request_id,
                    )
                    batch = []
            if batch:
                yield pb.PutRecordsRequest(
                    feature_group=common_pb2.FeatureGroupRef(name=group),
                    records=batch,
                    request_id=request_id,
                )

        return self.stub.PutRecords(stream(), timeout=self.timeout)

    @mapped_errors
    def get_features(
        self,
        group: str,
        keys: Sequence[int] | Sequence[str],
        features: Sequence[str] = (),
        *,
        version: int = 0,
    ) -> Features:
        ints = bool(keys) and isinstance(keys[0], (int, np.integer))
        entity_keys = (
            pb.EntityKeys(int64_keys=[int(k) for k in keys])
            if ints
            else pb.EntityKeys(string_keys=[str(k) for k in keys])
        )
        request = pb.GetFeaturesRequest(
            feature_group=common_pb2.FeatureGroupRef(name=group, version=version),
            entity_keys=entity_keys,
            feature_names=list(features),
        )
        if self._reader is not None:
            resp = self._reader.GetOnlineFeatures(
                online_pb.GetOnlineFeaturesRequest(read=request), timeout=self.timeout
            ).features
        else:
            resp = self.stub.GetFeatures(request, timeout=self.timeout)
        n = len(resp.found)
        return Features(
            layout=resp.layout,
            found=np.array(resp.found, dtype=bool),
            event_time_us=np.array(resp.event_time_micros, dtype=np.int64),
            float32=np.frombuffer(resp.float32_values, "<f4").reshape(n, resp.layout.float32_width),
            int64=np.array(resp.int64_values, dtype=np.int64).reshape(n, resp.layout.int64_width),
            float64=np.array(resp.float64_values).reshape(n, resp.layout.float64_width),
            strings=list(resp.string_values),
        )

    # -- datasets -------------------------------------------------------------------------

    @mapped_errors
    def register_dataset(
        self,
        name: str,
        artifacts: Sequence[common_pb2.ArtifactRef],
        *,
        label_column: str = "",
        entity_column: str = "",
        timestamp_column: str = "",
        parents: Sequence[common_pb2.LineageParent] = (),
        request_id: str = "",
    ) -> pb.Dataset:
        return self.stub.RegisterDataset(
            pb.RegisterDatasetRequest(
                name=name,
                artifacts=artifacts,
                label_column=label_column,
                entity_column=entity_column,
                timestamp_column=timestamp_column,
                parents=list(parents),
                request_id=request_id,
            ),
            timeout=self.timeout,
        ).dataset

    @mapped_errors
    def get_dataset(self, dataset_id: str, version: int = 0) -> pb.Dataset:
        return self.stub.GetDataset(
            pb.GetDatasetRequest(ref=common_pb2.DatasetRef(dataset_id=dataset_id, version=version)),
            timeout=self.timeout,
        ).dataset

    @mapped_errors
    def list_datasets(self, name_prefix: str = "") -> list[pb.Dataset]:
        return list(
            self.stub.ListDatasets(
                pb.ListDatasetsRequest(
                    name_prefix=name_prefix, page=common_pb2.PageRequest(page_size=1000)
                ),
                timeout=self.timeout,
            ).datasets
        )

    # -- jobs -----------------------------------------------------------------------------

    @mapped_errors
    def submit_match_samples(
        self, spec: pb.MatchSamplesSpec, *, request_id: str = ""
    ) -> pb.DataJob:
        return self.stub.SubmitMatchSamplesJob(
            pb.SubmitMatchSamplesJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def submit_derive(self, spec: pb.DeriveDatasetSpec, *, request_id: str = "") -> pb.DataJob:
        return self.stub.SubmitDeriveDatasetJob(
            pb.SubmitDeriveDatasetJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def submit_ingest(self, spec: pb.IngestSpec, *, request_id: str = "") -> pb.DataJob:
        return self.stub.SubmitIngestJob(
            pb.SubmitIngestJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def get_job(self, job_id: str) -> pb.DataJob:
        return self.stub.GetDataJob(pb.GetDataJobRequest(job_id=job_id), timeout=self.timeout).job

    @mapped_errors
    def cancel_job(self, job_id: str) -> pb.DataJob:
        return self.stub.CancelDataJob(
            pb.CancelDataJobRequest(job_id=job_id), timeout=self.timeout
        ).job

    def watch_job(self, job_id: str) -> Iterator[pb.DataJob]:
        stream = self.stub.WatchDataJob(pb.WatchDataJobRequest(job_id=job_id))
        for resp in mapped_stream(stream):
            yield resp.job

    def wait_job(self, job_id: str, timeout: float = 600.0) -> pb.DataJob:
        """Follow the job until it ends; returns its final state (check status.state)."""
        deadline = time.monotonic() + timeout
        job = self.get_job(job_id)
        for job in self.watch_job(job_id):
            if job.status.state in TERMINAL:
                return job
            if time.monotonic() > deadline:
                break
        if job.status.state not in TERMINAL:
            raise DeadlineExceeded(f"data job {job_id} still running after {timeout:.0f}s")
        return job

"""One lineage across the services, built with real calls on real servers: labels in a
labeling project -> export registered as a dataset -> point-in-time match with a feature
group -> training job -> model version in serving -> endpoint -> one served prediction; then
walked from the prediction back to the labels and the feature group version, and forward
again from the feature group to the prediction. Unknown ids are NOT_FOUND; a deleted parent
is reported as missing; the CLI prints the same graph."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.labeling.v1 import labeling_service_pb2 as lab_pb
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as trainer_pb
from atlas_core.cli import main as cli_main
from atlas_core.clients import LineageClient
from atlas_core.config import S3Settings
from atlas_core.errors import InvalidArgument, NotFound
from atlas_core.lineage import LineageGraph
from atlas_core.rpc import ClientSettings

from ..data.conftest import TOKEN as DATA_TOKEN
from ..data.test_datasets import wait_job
from ..data.test_feature_store import put
from ..labeling.conftest import TOKEN as LABELING_TOKEN
from ..labeling.conftest import running_labeling_service
from ..labeling.test_labeling_jobs import CLASSES, succeeded
from ..serving.conftest import TOKEN as SERVING_TOKEN
from ..serving.conftest import live, row, serving_settings, start_harness, stop_harness
from ..trainer.test_dataset_training import small_spec, train

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
GROUP, ROWS = "customers", 160


def _record(key: str, event_s: float, f: np.ndarray) -> data_pb.FeatureRecord:
    event = timestamp_pb2.Timestamp()
    event.FromMicroseconds(int(event_s * 1e6))
    return data_pb.FeatureRecord(
        entity_key=data_pb.EntityKey(string_key=key), event_time=event, float32_values=f.tobytes()
    )


async def _features(data: Any, f: np.ndarray, start: float) -> None:
    await data.stub.CreateFeatureGroup(
        data_pb.CreateFeatureGroupRequest(
            spec=data_pb.FeatureGroupSpec(
                name=GROUP,
                entity_key="customer",
                entity_key_type=data_pb.ENTITY_KEY_TYPE_STRING,
                event_time_column="ts",
                features=[
                    data_pb.FeatureSpec(name="f1", dtype=data_pb.FEATURE_TYPE_FLOAT32),
                    data_pb.FeatureSpec(name="f2", dtype=data_pb.FEATURE_TYPE_FLOAT32),
                ],
            )
        )
    )
    await put(data.stub, [_record(str(k), start, f[k]) for k in range(ROWS)], name=GROUP)
    await asyncio.to_thread(data.service.flush_offline)


async def _labels(stub: Any, f: np.ndarray, start: float) -> tuple[str, lab_pb.ExportResult]:
    """A project whose items are the customers, labeled by the rule f1 + f2 > 0, exported
    and registered as a dataset (entity_key, event_time, label)."""
    spec = lab_pb.ProjectSpec(
        name="churn-labels", task_type=lab_pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=CLASSES
    )
    pid = (await stub.CreateProject(lab_pb.CreateProjectRequest(spec=spec))).project.project_id
    when = timestamp_pb2.Timestamp()
    when.FromMicroseconds(int((start + 60) * 1e6))
    await stub.AddItems(
        lab_pb.AddItemsRequest(
            project_id=pid,
            items=[
                lab_pb.NewItem(
                    content=lab_pb.ItemContent(text=f"customer {k}"),
                    entity_id=str(k),
                    label_time=when,
                )
                for k in range(ROWS)
            ],
        )
    )
    while True:
        leased = await stub.RequestAssignments(
            lab_pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=100)
        )
        if not leased.assignments:
            break
        for a in leased.assignments:
            k = int(a.item.entity_id)
            label = "pos" if f[k, 0] + f[k, 1] > 0 else "neg"
            await stub.SubmitAnnotation(
                lab_pb.SubmitAnnotationRequest(
                    assignment_id=a.assignment_id,
                    annotator="ann",
                    value=lab_pb.AnnotationValue(classes=lab_pb.ClassLabels(labels=[label])),
                )
            )
    job = (
        await stub.SubmitExportJob(
            lab_pb.SubmitExportJobRequest(
                spec=lab_pb.ExportSpec(project_id=pid, dataset_name="churn-labels")
            )
        )
    ).job
    return pid, (await succeeded(stub, job)).export_result


async def _match(data: Any, labels: common_pb2.DatasetRef) -> tuple[data_pb.Dataset, str]:
    spec = data_pb.MatchSamplesSpec(
        sample_source=data_pb.SampleSource(
            dataset=labels,
            entity_column="entity_key",
            timestamp_column="event_time",
            label_column="label",
        ),
        features=[data_pb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=GROUP))],
        output_dataset_name="churn-train",
    )
    job = (
        await data.stub.SubmitMatchSamplesJob(data_pb.SubmitMatchSamplesJobRequest(spec=spec))
    ).job
    done = await wait_job(data.stub, job.status.job_id, timeout=60)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    return done.dataset_result.datasets[0], job.status.job_id


class Chain:
    """The ids of every step, and a lineage client for all four services."""

    def __init__(self, **ids: Any) -> None:
        self.__dict__.update(ids)

    async def walk(self, start: str, **kw: Any) -> LineageGraph:
        return await asyncio.to_thread(self.client.walk, start, **kw)


@contextlib.asynccontextmanager
async def built_chain(trainer_harness: Any, tmp_path: Path, s3: S3Settings):  # type: ignore[no-untyped-def]
    """Every service up on port 0 and the chain built through their RPCs."""
    h = trainer_harness
    rng = np.random.default_rng(3)
    f = rng.normal(size=(ROWS, 2)).astype("<f4")
    start = time.time() - 3600
    async with running_labeling_service(
        tmp_path / "labeling",
        s3,
        data_target=h.data.server.address,
        data_token=DATA_TOKEN,
    ) as labeling:
        serving = await start_harness(serving_settings(tmp_path / "serving", s3, ""))
        client = LineageClient.connect(
            {
                "data": ClientSettings(target=h.data.server.address, token=SecretStr(DATA_TOKEN)),
                "trainer": ClientSettings(target=h.server.address, token=SecretStr(DATA_TOKEN)),
                "labeling": ClientSettings(
                    target=labeling.server.address, token=SecretStr(LABELING_TOKEN)
                ),
                "serving": ClientSettings(
                    target=serving.server.address, token=SecretStr(SERVING_TOKEN)
                ),
            }
        )
        try:
            await _features(h.data, f, start)
            pid, export = await _labels(labeling.stub, f, start)
            matched, match_job = await _match(h.data, export.dataset)
            spec = small_spec(
                dataset=matched.ref, target="label", ignore=("entity_key", "event_time")
            )
            spec.budget.wall_time.seconds = 120  # ends after its 4 trials; slack for a busy host
            job = await train(h, spec)
            version = (
                await serving.stub.RegisterModelVersion(
                    serving_pb.RegisterModelVersionRequest(
                        model_name="churn", bundle=job.result.model_bundle
                    )
                )
            ).model_version
            endpoint = serving_pb.EndpointSpec(
                name="churn",
                variants=[live("blue", "churn", version.ref.version)],
                quality=serving_pb.QualityConfig(enabled=True),
            )
            await serving.stub.CreateEndpoint(serving_pb.CreateEndpointRequest(spec=endpoint))
            served = await serving.stub.Predict(
                serving_pb.PredictRequest(endpoint_name="churn", row=row({"f1": 1.0, "f2": 0.5}))
            )
            yield Chain(
                client=client,
                data=h.data,
                serving=serving,
                labeling=labeling,
                trainer=h,
                project=f"labeling_project:{pid}",
                export=f"label_export:{export.export_id}",
                labels=f"dataset:{export.dataset.dataset_id}@{export.dataset.version}",
                labels_ref=export.dataset,
                group=f"feature_group:{GROUP}@1",
                matched=f"dataset:{matched.ref.dataset_id}@{matched.ref.version}",
                match_job=f"data_job:{match_job}",
                training_job=f"training_job:{job.status.job_id}",
                model=f"model_version:churn@{version.ref.version}",
                endpoint="endpoint:churn",
                prediction=f"prediction:{served.prediction_id}",
                prediction_id=served.prediction_id,
            )
        finally:
            client.close()
            await stop_harness(serving)


def _edge(graph: LineageGraph, parent: str, child: str) -> str | None:
    return next((e.role for e in graph.edges if e.parent == parent and e.child == child), None)


async def test_a_prediction_walks_back_to_labels_and_features_and_forward_again(
    trainer_harness: Any, tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with built_chain(trainer_harness, tmp_path, s3_settings) as c:
        # Upstream from the bare prediction id (recognised by its form).
        up = await c.walk(c.prediction_id, downstream=False)
        assert up.root == c.prediction and not up.cycles and not up.truncated
        chain = [
            c.prediction,
            c.model,
            c.training_job,
            c.matched,
            c.group,
            c.labels,
            c.export,
            c.project,
            c.match_job,
            c.endpoint,
        ]
        for lid in chain:
            assert up.nodes[lid].status == "ok", (lid, up.nodes.get(lid))
        assert _edge(up, c.model, c.prediction) == "model"
        assert up.nodes[c.model].child_counts == {"endpoint": 1, "prediction": 1}
        assert up.nodes[c.endpoint].child_counts == {"prediction": 1}
        assert _edge(up, c.endpoint, c.prediction) == "endpoint"
        assert _edge(up, c.training_job, c.model) == "produced_by"
        assert _edge(up, c.matched, c.model) == "training_data"
        assert _edge(up, c.matched, c.training_job) == "training_data"
        assert _edge(up, c.group, c.matched) == "features"
        assert _edge(up, c.labels, c.matched) == "samples"
        assert _edge(up, c.export, c.labels) == "labels"
        assert _edge(up, c.project, c.export) == "labels"
        trial = next(e.parent for e in up.parents_of(c.model) if e.role == "trial")
        assert trial.startswith(c.training_job.replace("training_job:", "trial:") + "#")
        assert up.nodes[trial].status == "ok"
        bundle = next(e.parent for e in up.parents_of(c.model) if e.role == "bundle")
        assert up.nodes[bundle].status == "external" and bundle.startswith("artifact:s3://")
        # Times and who made each step: every step after the one it came from.
        times = {lid: up.nodes[lid].node.create_time for lid in chain}  # type: ignore[union-attr]  # all ok above
        order = [c.project, c.export, c.labels, c.matched, c.training_job, c.model, c.prediction]
        assert all(times[a] <= times[b] for a, b in zip(order, order[1:], strict=False)), times
        assert up.nodes[c.model].node.produced_by == c.training_job  # type: ignore[union-attr]
        assert up.nodes[c.matched].node.produced_by == c.match_job  # type: ignore[union-attr]
        assert up.nodes[c.matched].node.operation.startswith("match")  # type: ignore[union-attr]

        # Forward again: from the feature group version, and from the labeling project.
        for start in (c.group, c.project):
            down = await c.walk(start, upstream=False)
            assert c.prediction in down.nodes, sorted(down.nodes)
            assert down.nodes[c.prediction].status == "ok"
            assert {c.matched, c.training_job, c.model, c.endpoint} <= set(down.nodes)
        assert down.nodes[c.project].child_counts == {"item": ROWS, "label_export": 1}
        # Downstream lists are bounded; counts stay complete.
        view = await asyncio.to_thread(c.client.fetch, "labeling", c.project, 5)
        assert len([x for x in view.children if x.id.startswith("item:")]) == 5
        assert view.child_counts["item"] == ROWS

        # A service answers for its own ancestors of an id in the same call.
        view = await asyncio.to_thread(c.client.fetch, "data", c.matched, 5, 4)
        assert {a.node.id for a in view.ancestors if a.node} == {c.labels, c.group, c.match_job}
        view = await asyncio.to_thread(c.client.fetch, "data", c.matched, 5, 0)
        assert view.ancestors == []

        # Unknown ids: NOT_FOUND from the walk and from each owning service.
        with pytest.raises(NotFound):
            await c.walk("dataset:no-such@1")
        with pytest.raises(InvalidArgument):
            await c.walk("no-such-kind:1")
        for stub, pb, lid in (
            (c.data.stub, data_pb, "dataset:no-such@1"),
            (c.trainer.stub, trainer_pb, "training_job:0123"),
            (c.serving.stub, serving_pb, "prediction:" + "0" * 32),
            (c.labeling.stub, lab_pb, "item:itm-none"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetLineage(pb.GetLineageRequest(id=lid))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND, lid
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetLineage(pb.GetLineageRequest(id="dataset"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # A deleted parent is a missing node, not a failed walk.
        await c.data.stub.DeleteDataset(data_pb.DeleteDatasetRequest(ref=c.labels_ref))
        after = await c.walk(c.prediction, downstream=False)
        assert after.nodes[c.labels].status == "missing"
        assert after.nodes[c.group].status == "ok" and after.nodes[c.matched].status == "ok"

        # The CLI: the serving service alone answers for the prediction and its model;
        # nodes of services it cannot reach are reported as errors, not a failure.
        out = io.StringIO()
        args = [
            "lineage",
            c.prediction_id,
            "-o",
            "json",
            "--direction",
            "up",
            "--serving-address",
            c.serving.server.address,
            "--token",
            SERVING_TOKEN,
            "--data-dir",
            str(tmp_path / "no-suite"),
        ]
        with contextlib.redirect_stdout(out):
            code = await asyncio.to_thread(cli_main, args)
        assert code == 0
        printed = {n["id"]: n for n in json.loads(out.getvalue())["nodes"]}
        assert printed[c.model]["status"] == "ok" and printed[c.model]["create_time"]
        assert printed[c.training_job]["status"] == "error"

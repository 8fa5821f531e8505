"""kill -9 of the labeling service (and its job subprocess) mid-import and mid-export, then a
restart: the job resumes from its checkpoint and ends with nothing duplicated or lost; leases
granted before the crash still hold."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, insert, select, update

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas.labeling.v1 import labeling_service_pb2_grpc as pb_grpc
from atlas_core.rpc import ClientSettings, connect_sync
from atlas_core.storage import open_artifact_store
from atlas_labeling.tables import label_rows, projects
from tests.support.processes import free_port, start_service
from tests.support.signing import signing_settings

pytestmark = pytest.mark.slow
TOKEN = "labeling-crash-token-0123"
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


def _start(tmp_path, s3, port: int, **extra: str) -> subprocess.Popen:
    return start_service(
        "atlas_labeling",
        "atlas.labeling.v1.LabelingService",
        port,
        {
            **extra,
            "ATLAS_LABELING_SERVER__PORT": str(port),
            "ATLAS_LABELING_SERVER__AUTH__TOKENS": json.dumps({TOKEN: ["*"]}),
            "ATLAS_LABELING_S3__ENDPOINT": s3.endpoint,
            "ATLAS_LABELING_S3__ACCESS_KEY": s3.access_key.get_secret_value(),
            "ATLAS_LABELING_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "ATLAS_LABELING_S3__BUCKET": s3.bucket,
            "ATLAS_LABELING_DATABASE__URL": f"sqlite:///{tmp_path / 'labeling.db'}",
            "ATLAS_LABELING_DATA_DIR": str(tmp_path),
            "ATLAS_LABELING_JOBS__RUNNER_ID": "labeling-crash-test",
        },
        tmp_path,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the service and its job subprocess
    except ProcessLookupError:
        pass
    proc.wait()


def _stub(port: int):  # type: ignore[no-untyped-def]
    channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
    return channel, pb_grpc.LabelingServiceStub(channel)


def _job(stub, job_id: str) -> pb.LabelingJob:  # type: ignore[no-untyped-def]
    return stub.GetLabelingJob(pb.GetLabelingJobRequest(job_id=job_id)).job


def _wait_until(stub, job_id: str, done, timeout: float = 120) -> pb.LabelingJob:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = _job(stub, job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_kill_9_mid_import_and_mid_export_resumes_without_duplicates(tmp_path, s3_settings):
    port = free_port()
    proc = _start(tmp_path, s3_settings, port)
    channel, stub = _stub(port)
    try:
        spec = pb.ProjectSpec(
            name="crash",
            task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
            labels=[pb.LabelDefinition(name="a"), pb.LabelDefinition(name="b")],
        )
        pid = stub.CreateProject(pb.CreateProjectRequest(spec=spec)).project.project_id
        stub.AddItems(
            pb.AddItemsRequest(
                project_id=pid, items=[pb.NewItem(content=pb.ItemContent(text="leased"))]
            )
        )
        (lease,) = stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=1)
        ).assignments

        # ---- mid-import -------------------------------------------------------------------
        n = 40_000
        buf = io.BytesIO()
        pq.write_table(pa.table({"text": [f"row {i}" for i in range(n)]}), buf)
        store = open_artifact_store(s3_settings)
        ref = store.put_bytes("manifests/crash.parquet", buf.getvalue())
        manifest = pb.ManifestImport(
            manifest=common_pb2.ArtifactRef(uri=ref.uri), content_column="text"
        )
        job = stub.SubmitImportJob(
            pb.SubmitImportJobRequest(spec=pb.ImportSpec(project_id=pid, manifest=manifest))
        ).job
        job_id = job.status.job_id
        _wait_until(stub, job_id, lambda j: "items added" in j.status.progress.message)
        mid = stub.GetProject(pb.GetProjectRequest(project_id=pid)).project.stats.items
        channel.close()
        _kill_group(proc)
        assert 1 < mid < n + 1, "the import must be killed half-way"

        proc = _start(tmp_path, s3_settings, port)
        channel, stub = _stub(port)
        job = _wait_until(stub, job_id, lambda j: j.status.state in TERMINAL)
        assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error
        assert job.status.attempt >= 2
        assert job.item_result.items_processed == n
        items = stub.GetProject(pb.GetProjectRequest(project_id=pid)).project.stats.items
        assert items == n + 1  # every row once: nothing lost, nothing duplicated
        # The lease granted before the crashes still holds and can be submitted.
        done = stub.SubmitAnnotation(
            pb.SubmitAnnotationRequest(
                assignment_id=lease.assignment_id,
                annotator="ann",
                value=pb.AnnotationValue(classes=pb.ClassLabels(labels=["a"])),
            )
        )
        assert done.item_status == pb.ITEM_STATUS_DONE

        # ---- mid-export -------------------------------------------------------------------
        rows = 150_000
        engine = create_engine(f"sqlite:///{tmp_path / 'labeling.db'}")
        now = datetime.now(timezone.utc)
        with engine.begin() as conn:
            # Label history written straight into the table: the export is under test here.
            conn.execute(
                insert(label_rows),
                [
                    {
                        "project_id": pid,
                        "seq": 1 + s,
                        "item_id": f"itm-{s}",
                        "entity_key": f"e{s}",
                        "label": "ab"[s % 2],
                        "value": json.dumps({"kind": "classes", "labels": ["ab"[s % 2]]}),
                        "event_time": now - timedelta(days=1),
                        "created_at": now,
                        "label_version": 1,
                        "annotators": '["sim"]',
                        "agreement": None,
                        "source": "human",
                    }
                    for s in range(1, rows)
                ],
            )
            conn.execute(
                update(projects).where(projects.c.project_id == pid).values(label_seq=rows)
            )
        engine.dispose()
        job = stub.SubmitExportJob(
            pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid, rows_per_part=10_000))
        ).job
        job_id = job.status.job_id
        _wait_until(stub, job_id, lambda j: "label rows exported" in j.status.progress.message)
        channel.close()
        _kill_group(proc)

        proc = _start(tmp_path, s3_settings, port)
        channel, stub = _stub(port)
        job = _wait_until(stub, job_id, lambda j: j.status.state in TERMINAL)
        assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error
        assert job.status.attempt >= 2
        export = job.export_result
        assert export.rows == rows and export.cursor == str(rows)
        seqs: list[int] = []
        for part in export.parts:
            table = pq.read_table(io.BytesIO(store.get_bytes(store.key_for_uri(part.uri))))
            seqs += table.column("seq").to_pylist()
        assert seqs == list(range(1, rows + 1))  # each label row exactly once, in order
        assert export.label_counts == {"a": rows // 2, "b": rows // 2}
        listed = stub.ListExports(pb.ListExportsRequest(project_id=pid)).exports
        assert [e.export_id for e in listed] == [job_id]
    finally:
        channel.close()
        _kill_group(proc)


def _start_serving(tmp_path, s3, port: int) -> subprocess.Popen:
    return start_service(
        "atlas_serving",
        "atlas.serving.v1.ServingService",
        port,
        {
            "ATLAS_SERVING_SERVER__PORT": str(port),
            "ATLAS_SERVING_SERVER__METRICS_PORT": "null",
            "ATLAS_SERVING_SERVER__AUTH__TOKENS": json.dumps({TOKEN: ["*"]}),
            "ATLAS_SERVING_S3__ENDPOINT": s3.endpoint,
            "ATLAS_SERVING_S3__BUCKET": s3.bucket,
            "ATLAS_SERVING_S3__ACCESS_KEY": s3.access_key.get_secret_value(),
            "ATLAS_SERVING_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "ATLAS_SERVING_DATABASE__URL": f"sqlite:///{tmp_path / 'serving.db'}",
            "ATLAS_SERVING_DATA_DIR": str(tmp_path / "serving"),
            # write_model signs with the test key
            "ATLAS_SERVING_BUNDLES__TRUSTED_KEYS": json.dumps(
                [str(p) for p in signing_settings(tmp_path).trusted_keys]
            ),
            "ATLAS_SERVING_RUNTIME__POLL_SECONDS": "0.1",
        },
        tmp_path,
    )


def test_kill_9_mid_prelabel_resumes_and_stores_each_suggestion_once(tmp_path, s3_settings):
    from atlas.serving.v1 import serving_service_pb2 as serving_pb
    from atlas.serving.v1 import serving_service_pb2_grpc as serving_grpc
    from atlas_labeling.tables import annotations_table
    from tests.grpc.serving.conftest import breast_cancer, live, write_model

    serving_port, port = free_port(), free_port()
    serving = _start_serving(tmp_path, s3_settings, serving_port)
    peer = {
        "ATLAS_LABELING_SERVING__TARGET": f"127.0.0.1:{serving_port}",
        "ATLAS_LABELING_SERVING__TOKEN": TOKEN,
    }
    proc = _start(tmp_path, s3_settings, port, **peer)
    channel, stub = _stub(port)
    serving_channel = connect_sync(ClientSettings(target=f"127.0.0.1:{serving_port}", token=TOKEN))
    try:
        bundle = write_model(s3_settings, "models/bc/v1.tar")
        sstub = serving_grpc.ServingServiceStub(serving_channel)
        sstub.RegisterModelVersion(
            serving_pb.RegisterModelVersionRequest(
                model_name="bc",
                bundle=common_pb2.ArtifactRef(
                    uri=bundle.uri, sha256=bundle.sha256, size_bytes=bundle.size
                ),
            )
        )
        sstub.CreateEndpoint(
            serving_pb.CreateEndpointRequest(
                spec=serving_pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)])
            )
        )
        spec = pb.ProjectSpec(
            name="pre",
            task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
            labels=[pb.LabelDefinition(name="0"), pb.LabelDefinition(name="1")],
        )
        pid = stub.CreateProject(pb.CreateProjectRequest(spec=spec)).project.project_id
        records = breast_cancer()[0].to_dict("records")
        n = 12_000
        for start in range(0, n, 1000):
            batch = []
            for i in range(start, start + 1000):
                item = pb.NewItem(content=pb.ItemContent(text=f"case {i}"))
                item.metadata.update(records[i % len(records)])
                batch.append(item)
            stub.AddItems(pb.AddItemsRequest(project_id=pid, items=batch))
        job = stub.SubmitPrelabelJob(
            pb.SubmitPrelabelJobRequest(
                spec=pb.PrelabelSpec(project_id=pid, endpoint_name="bc", batch_size=100)
            )
        ).job
        job_id = job.status.job_id
        _wait_until(stub, job_id, lambda j: "pre-labelled" in j.status.progress.message)
        channel.close()
        _kill_group(proc)

        proc = _start(tmp_path, s3_settings, port, **peer)
        channel, stub = _stub(port)
        job = _wait_until(stub, job_id, lambda j: j.status.state in TERMINAL, timeout=300)
        assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error
        assert job.status.attempt >= 2
        engine = create_engine(f"sqlite:///{tmp_path / 'labeling.db'}")
        with engine.connect() as conn:
            stored = (
                conn.execute(
                    select(annotations_table.c.item_id).where(annotations_table.c.source == "model")
                )
                .scalars()
                .all()
            )
        engine.dispose()
        assert len(stored) == n and len(set(stored)) == n  # each item once, none lost
    finally:
        channel.close()
        serving_channel.close()
        _kill_group(proc)
        _kill_group(serving)

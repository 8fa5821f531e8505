"""Labeling service benchmark: assignment latency under 50 concurrent annotators, export
throughput and memory, and Label Studio's export of the same labels.

    python bench/labeling.py [--quick] [--no-labelstudio] [--dbs sqlite,postgresql]
    python bench/labeling.py --skip-assign --no-labelstudio --export-rows 1000000

``--skip-assign`` measures the export only (no assignment load) and records it under
``labeling_export`` so it never replaces a full run's ``labeling.json``.

1. ``assign_submit_p99_ms_c50``: RequestAssignments + SubmitAnnotation over real gRPC against
   ``python -m atlas_labeling`` (a separate process), 50 annotators spread over load-generator
   processes (grpc.aio, several annotators per process), a 100,000-item text-classification
   project with overlap 2, on SQLite and on PostgreSQL (a fresh schema, dropped after). Two
   load shapes: *paced* (each annotator thinks ~1 s between receiving an item and submitting
   it: the round trip is the sum of the two RPC latencies, think time excluded) and
   *saturated* (no think time: every annotator fires its next RPC at once; a stress figure).
   The key holds the worse backend's paced p99. ``double_assignments`` is counted from the
   database afterwards (and from what the clients were handed).
2. ``export_rows_per_s``: 1,000,000 label rows are written straight into the service's label
   history table (``labeling_label_rows``, the rows the assignment/consensus path appends via
   ``labels.append_label``; the export is what is measured), then the real export job runs:
   SubmitExportJob over gRPC -> job subprocess -> Parquet parts in S3, timed from the submit
   to the job's SUCCEEDED. ``export_peak_rss_mb`` is the job subprocess's VmHWM (peak RSS),
   polled from /proc while it runs. A 1,000-row export is timed first: its time is the job's
   fixed cost (``export_fixed_s_<db>``), and ``export_rows_per_s_after_fixed_<db>`` the rate
   once that is taken out (for reading the figure; the key stays end to end).
3. ``labelstudio_export_rows_per_s``: Label Studio in its own venv (``python3 -m venv
   /tmp/ls-venv && /tmp/ls-venv/bin/pip install label-studio 'sentry-sdk>=2.16,<3'``), SQLite,
   the same labels imported as tasks with one annotation each through its REST import API, then
   its REST JSON export timed end to end (request to last byte). Ours is measured on the same
   row count too. A full run with ``--no-labelstudio`` carries the committed ``labeling.json``'s
   Label Studio section forward, marked ``carried_forward`` with the date and commit it was
   measured at, and measures ours again at its row count.

The label-quality figures (error correction vs cleanlab, Dawid-Skene vs majority) are in
bench/labeling_quality.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for extra in (ROOT / "src", ROOT / "services" / "labeling"):
    sys.path.insert(0, str(extra))

from bench._labeling_stats import (  # noqa: E402
    client_double_assignments,
    double_assignments,
    summarize_ms,
)

TOKEN = "bench-labeling-token-0123"
PROBE_ROWS = 1_000
PG_BASE = os.environ.get(
    "ATLAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LABELS = ["positive", "negative", "neutral"]
OVERLAP = 2
SERVICE = "atlas.labeling.v1.LabelingService"
LS_VENV = Path("/tmp/ls-venv")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- the service process ---------------------------------------------------------------------


class Service:
    """``python -m atlas_labeling`` on a free port, in its own process group."""

    def __init__(self, tmp: Path, s3: Any, db_url: str, name: str) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.data_dir = tmp / f"svc-{name}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pythonpath = ":".join(
            [str(ROOT / "src"), str(ROOT / "services" / "labeling"), str(ROOT)]
            + [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
        env.update(
            PYTHONPATH=pythonpath,
            ATLAS_LABELING_SERVER__PORT=str(self.port),
            ATLAS_LABELING_SERVER__METRICS_PORT="null",
            ATLAS_LABELING_SERVER__LOG_LEVEL="WARNING",
            ATLAS_LABELING_SERVER__AUTH__TOKENS=json.dumps({TOKEN: ["*"]}),
            ATLAS_LABELING_S3__ENDPOINT=s3.endpoint,
            ATLAS_LABELING_S3__BUCKET=s3.bucket,
            ATLAS_LABELING_S3__ACCESS_KEY=s3.access_key.get_secret_value(),
            ATLAS_LABELING_S3__SECRET_KEY=s3.secret_key.get_secret_value(),
            ATLAS_LABELING_DATABASE__URL=db_url,
            ATLAS_LABELING_DATA_DIR=str(self.data_dir),
            ATLAS_LABELING_JOBS__RUNNER_ID=f"bench-{name}",
        )
        self.log = self.data_dir / "service.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "atlas_labeling"],
                env=env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait()

    def _wait(self, timeout: float = 90) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"labeling service died: {self.log.read_text()[-3000:]}")
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"labeling service not serving after {timeout} s")

    def job_processes(self) -> list[int]:
        """Pids of the service's job subprocesses: multiprocessing spawn children, or the
        children of its fork server (which is not a job itself)."""
        import psutil

        found = []
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    cmd = " ".join(child.cmdline())
                    parent = " ".join(child.parent().cmdline()) if child.parent() else ""
                except psutil.Error:
                    continue
                if "resource_tracker" in cmd:
                    continue
                if "spawn_main" in cmd or ("forkserver" in cmd and "forkserver" in parent):
                    found.append(child.pid)
        except psutil.Error:
            pass
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def stub_for(target: str) -> tuple[Any, Any]:
    from pydantic import SecretStr

    from atlas.labeling.v1 import labeling_service_pb2_grpc as pb_grpc
    from atlas_core.rpc import ClientSettings, connect_sync

    channel = connect_sync(ClientSettings(target=target, token=SecretStr(TOKEN)))
    return channel, pb_grpc.LabelingServiceStub(channel)


def create_project(stub: Any, name: str, overlap: int = OVERLAP) -> str:
    from atlas.labeling.v1 import labeling_service_pb2 as pb

    spec = pb.ProjectSpec(
        name=name,
        task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
        labels=[pb.LabelDefinition(name=n) for n in LABELS],
        overlap=overlap,
    )
    spec.assignment_ttl.FromSeconds(3600)
    return str(stub.CreateProject(pb.CreateProjectRequest(spec=spec)).project.project_id)


def text_of(i: int) -> str:
    return f"review {i}: the product arrived {('late', 'on time', 'broken')[i % 3]} and works"


# ---- 1. assignment round trips ---------------------------------------------------------------


def _loadgen(job: dict[str, Any]) -> dict[str, Any]:
    """One load-generator process: ``job['annotators']`` annotators on one grpc.aio channel.
    Its imported heap is frozen out of the cyclic GC first, so a full collection in the
    client does not add its pause to a round trip measured here."""
    import gc

    gc.collect()
    gc.freeze()
    return asyncio.run(_loadgen_async(job))


async def _loadgen_async(job: dict[str, Any]) -> dict[str, Any]:
    import grpc

    from atlas.labeling.v1 import labeling_service_pb2 as pb
    from atlas.labeling.v1 import labeling_service_pb2_grpc as pb_grpc

    meta = (("authorization", f"Bearer {TOKEN}"),)
    rtt: list[float] = []
    req: list[float] = []
    sub: list[float] = []
    received: list[tuple[str, str]] = []
    errors: dict[str, int] = {}
    rng = random.Random(job["seed"])
    think = job["think_s"]
    measure_from = job["start_at"] + job["warmup_s"]
    stop_at = measure_from + job["seconds"]

    async def annotator(stub: Any, name: str) -> None:
        await asyncio.sleep(max(0.0, job["start_at"] - time.time()) + rng.random() * think)
        while time.time() < stop_at:
            t0 = time.perf_counter()
            started = time.time()
            try:
                resp = await stub.RequestAssignments(
                    pb.RequestAssignmentsRequest(
                        project_id=job["project_id"], annotator=name, count=1
                    ),
                    metadata=meta,
                    timeout=30,
                )
            except grpc.aio.AioRpcError as exc:
                errors[f"request:{exc.code().name}"] = (
                    errors.get(f"request:{exc.code().name}", 0) + 1
                )
                await asyncio.sleep(0.1)
                continue
            t1 = time.perf_counter()
            if not resp.assignments:
                errors["queue_empty"] = errors.get("queue_empty", 0) + 1
                return
            a = resp.assignments[0]
            received.append((a.item.item_id, name))
            if think:
                await asyncio.sleep(think * (0.5 + rng.random()))
            value = pb.AnnotationValue(classes=pb.ClassLabels(labels=[rng.choice(LABELS)]))
            t2 = time.perf_counter()
            try:
                await stub.SubmitAnnotation(
                    pb.SubmitAnnotationRequest(
                        assignment_id=a.assignment_id,
                        annotator=name,
                        value=value,
                        request_id=uuid.uuid4().hex,
                    ),
                    metadata=meta,
                    timeout=30,
                )
            except grpc.aio.AioRpcError as exc:
                errors[f"submit:{exc.code().name}"] = errors.get(f"submit:{exc.code().name}", 0) + 1
                continue
            t3 = time.perf_counter()
            if started >= measure_from and time.time() <= stop_at:
                req.append(t1 - t0)
                sub.append(t3 - t2)
                rtt.append((t1 - t0) + (t3 - t2))

    async with grpc.aio.insecure_channel(job["target"]) as channel:
        stub = pb_grpc.LabelingServiceStub(channel)
        await asyncio.gather(
            *(annotator(stub, f"{job['prefix']}-{i}") for i in range(job["annotators"]))
        )
    return {"rtt": rtt, "req": req, "sub": sub, "received": received, "errors": errors}


def add_items(stub: Any, project_id: str, n: int) -> float:
    from atlas.labeling.v1 import labeling_service_pb2 as pb

    t = time.perf_counter()
    for start in range(0, n, 1000):
        stub.AddItems(
            pb.AddItemsRequest(
                project_id=project_id,
                items=[
                    pb.NewItem(content=pb.ItemContent(text=text_of(i)), external_id=f"r{i}")
                    for i in range(start, min(n, start + 1000))
                ],
            ),
            timeout=120,
        )
    return time.perf_counter() - t


def run_load(
    target: str,
    project_id: str,
    *,
    annotators: int,
    procs: int,
    seconds: float,
    think_s: float,
    prefix: str,
) -> dict[str, Any]:
    per = [annotators // procs + (1 if i < annotators % procs else 0) for i in range(procs)]
    start_at = time.time() + 4.0  # after the spawned processes have imported grpc
    jobs = [
        {
            "target": target,
            "project_id": project_id,
            "annotators": n,
            "prefix": f"{prefix}-p{i}",
            "seed": i,
            "think_s": think_s,
            "start_at": start_at,
            "warmup_s": 3.0,
            "seconds": seconds,
        }
        for i, n in enumerate(per)
    ]
    ctx = multiprocessing.get_context("spawn")
    loads = []
    with ctx.Pool(procs) as pool:
        result = pool.map_async(_loadgen, jobs)
        while not result.ready():
            time.sleep(1.0)
            loads.append(os.getloadavg()[0])
        parts = result.get()
    rtt = [x for p in parts for x in p["rtt"]]
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    received = [x for p in parts for x in p["received"]]
    return {
        "think_s": think_s,
        "annotators": annotators,
        "load_processes": procs,
        "seconds": seconds,
        "round_trip": summarize_ms(rtt),
        "request": summarize_ms([x for p in parts for x in p["req"]]),
        "submit": summarize_ms([x for p in parts for x in p["sub"]]),
        "round_trips_per_s": len(rtt) / seconds,
        "errors": errors,
        "received": received,  # counted against the items' relabel rounds after the run
        "assignments_handed_out": len(received),
        "load_average_1m_max": round(max(loads), 2) if loads else None,
    }


def db_double_assignments(db_url: str, project_id: str) -> tuple[dict[str, int], dict[str, int]]:
    from sqlalchemy import create_engine, select

    from atlas_labeling.tables import assignments, items

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            gold = set(
                conn.execute(
                    select(items.c.item_id).where(
                        (items.c.project_id == project_id) & items.c.gold_value.is_not(None)
                    )
                ).scalars()
            )
            rounds = {
                r.item_id: int(r.rounds)
                for r in conn.execute(
                    select(items.c.item_id, items.c.rounds).where(
                        (items.c.project_id == project_id) & (items.c.rounds > 0)
                    )
                )
            }
            rows = [
                (r.item_id, r.annotator, r.state)
                for r in conn.execute(
                    select(
                        assignments.c.item_id, assignments.c.annotator, assignments.c.state
                    ).where((assignments.c.project_id == project_id) & ~assignments.c.is_review)
                )
                if r.item_id not in gold
            ]
    finally:
        engine.dispose()
    counts = double_assignments(rows, OVERLAP, rounds)
    counts["assignment_rows"] = len(rows)
    counts["relabel_rounds"] = sum(rounds.values())
    return counts, rounds


# ---- 2. export -------------------------------------------------------------------------------


def insert_label_rows(db_url: str, project_id: str, n: int, offset: int = 0) -> float:
    """n label rows (versions 1, human source) for items r<offset>.. of ``project_id``."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import create_engine, insert, update

    from atlas_labeling.tables import label_rows, projects
    from atlas_labeling.values import Classes, to_json

    values = [json.dumps(to_json(Classes((label,)))) for label in LABELS]
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    engine = create_engine(db_url)
    t = time.perf_counter()
    try:
        with engine.begin() as conn:
            for start in range(0, n, 50_000):
                conn.execute(
                    insert(label_rows),
                    [
                        {
                            "project_id": project_id,
                            "seq": i + 1,
                            "item_id": f"itm-{project_id[-8:]}-{i:07d}",
                            "entity_key": f"customer-{offset + i}",
                            "label": LABELS[i % 3],
                            "value": values[i % 3],
                            "event_time": base + timedelta(seconds=i),
                            "created_at": base + timedelta(seconds=i, minutes=5),
                            "label_version": 1,
                            "annotators": json.dumps([f"ann-{i % 50}", f"ann-{(i + 7) % 50}"]),
                            "agreement": 1.0,
                            "source": "consensus",
                        }
                        for i in range(start, min(n, start + 50_000))
                    ],
                )
            conn.execute(
                update(projects).where(projects.c.project_id == project_id).values(label_seq=n)
            )
    finally:
        engine.dispose()
    return time.perf_counter() - t


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_export(svc: Service, stub: Any, project_id: str, expect: int) -> dict[str, Any]:
    from atlas.common.v1 import common_pb2
    from atlas.labeling.v1 import labeling_service_pb2 as pb

    terminal = {
        common_pb2.JOB_STATE_SUCCEEDED,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
    }
    before = set(svc.job_processes())
    hwm: dict[int, int] = {}
    t0 = time.perf_counter()
    job = stub.SubmitExportJob(
        pb.SubmitExportJobRequest(
            spec=pb.ExportSpec(project_id=project_id, format=pb.EXPORT_FORMAT_PARQUET)
        )
    ).job
    job_id = job.status.job_id
    pids: list[int] = []
    loads = []
    tick = 0
    while True:
        # Scanning /proc for children is dearer than reading VmHWM: every 5th tick once the
        # job's process was seen, every tick until then (a small export ends within 0.25 s).
        if tick % 5 == 0 or not pids:
            pids = [p for p in svc.job_processes() if p not in before]
            loads.append(os.getloadavg()[0])
        for pid in pids:
            kb = _vm_hwm_kb(pid)
            if kb is not None:
                hwm[pid] = max(hwm.get(pid, 0), kb)
        job = stub.GetLabelingJob(pb.GetLabelingJobRequest(job_id=job_id)).job
        if job.status.state in terminal:
            break
        tick += 1
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"export job failed: {job.status.error}")
    rows = job.export_result.rows
    if rows != expect:
        raise RuntimeError(f"export wrote {rows} rows, expected {expect}")
    in_job = (job.status.end_time.ToDatetime() - job.status.start_time.ToDatetime()).total_seconds()
    return {
        "rows": rows,
        "parts": len(job.export_result.parts),
        "parquet_bytes": sum(p.size_bytes for p in job.export_result.parts),
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "job_run_seconds": in_job,
        "job_rows_per_s": rows / in_job if in_job > 0 else None,
        "peak_rss_mb": max(hwm.values()) / 1024 if hwm else None,
        "job_processes_seen": len(hwm),
        "load_average_1m_max": round(max(loads), 2) if loads else None,
    }


# ---- 3. Label Studio -------------------------------------------------------------------------


LS_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    + "".join(f'<Choice value="{n}"/>' for n in LABELS)
    + "</Choices></View>"
)


def ls_tasks(start: int, stop: int) -> list[dict[str, Any]]:
    return [
        {
            "data": {"text": text_of(i), "entity_key": f"customer-{i}"},
            "annotations": [
                {
                    "result": [
                        {
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [LABELS[i % 3]]},
                        }
                    ]
                }
            ],
        }
        for i in range(start, stop)
    ]


def run_labelstudio(tmp: Path, max_rows: int, import_budget_s: float) -> dict[str, Any]:
    """Start Label Studio, import up to ``max_rows`` annotated tasks within the budget, time
    its JSON export. Returns the figures or {"error": ...}."""
    import requests

    exe = LS_VENV / "bin" / "label-studio"
    if not exe.exists():
        return {
            "error": f"{exe} not found: install with python3 -m venv {LS_VENV} && "
            # label-studio 1.23.2 passes send_default_pii, which sentry-sdk 3 rejects at start.
            f"{LS_VENV}/bin/pip install label-studio 'sentry-sdk>=2.16,<3'"
        }
    version = subprocess.run(
        [
            str(LS_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('label-studio'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    data = tmp / "ls-data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(20)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        LABEL_STUDIO_USERNAME="bench@example.com",
        LABEL_STUDIO_PASSWORD="bench-password-0123",
        LABEL_STUDIO_USER_TOKEN=token,
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        # The import API refuses large bodies by default (DATA_UPLOAD_MAX_MEMORY_SIZE).
        DATA_UPLOAD_MAX_MEMORY_SIZE=str(1024 * 1024 * 1024),
        LOG_LEVEL="WARNING",
        DEBUG="false",
    )
    log_path = tmp / "labelstudio.log"
    out: dict[str, Any] = {"version": version}
    t = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(exe),
                "start",
                "--no-browser",
                "--port",
                str(port),
                "--data-dir",
                str(data),
                "--internal-host",
                "127.0.0.1",
                "--enable-legacy-api-token",
                "--log-level",
                "WARNING",
            ],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Token {token}"}
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                return {**out, "error": "label-studio exited: " + log_path.read_text()[-3000:]}
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                return {
                    **out,
                    "error": "label-studio not healthy after 600 s: "
                    + log_path.read_text()[-3000:],
                }
            time.sleep(1)
        out["start_s"] = time.perf_counter() - t
        r = requests.post(
            f"{base}/api/projects",
            json={"title": "bench", "label_config": LS_CONFIG},
            headers=headers,
            timeout=60,
        )
        if not r.ok:
            return {**out, "error": f"create project: HTTP {r.status_code} {r.text[:1000]}"}
        project = r.json()["id"]
        batch = 5000
        imported = 0
        t = time.perf_counter()
        while imported < max_rows and time.perf_counter() - t < import_budget_s:
            stop = min(max_rows, imported + batch)
            r = requests.post(
                f"{base}/api/projects/{project}/import",
                json=ls_tasks(imported, stop),
                headers=headers,
                timeout=1200,
            )
            if not r.ok:
                return {**out, "error": f"import: HTTP {r.status_code} {r.text[:1000]}"}
            imported = stop
            print(
                f"  label studio: {imported} tasks imported ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
        out["import_s"] = time.perf_counter() - t
        out["imported_tasks"] = imported
        out["import_rows_per_s"] = imported / out["import_s"]
        t = time.perf_counter()
        r = requests.get(
            f"{base}/api/projects/{project}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            headers=headers,
            timeout=3600,
        )
        body = r.content
        elapsed = time.perf_counter() - t
        if not r.ok:
            return {**out, "error": f"export: HTTP {r.status_code} {body[:1000]!r}"}
        tasks = json.loads(body)
        rows = sum(len(task.get("annotations", [])) for task in tasks)
        out.update(
            export_s=elapsed,
            export_bytes=len(body),
            export_tasks=len(tasks),
            export_rows=rows,
            export_rows_per_s=rows / elapsed,
        )
        return out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ---- driver ----------------------------------------------------------------------------------


class Database:
    """A SQLite file or a fresh PostgreSQL schema (dropped on close)."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.schema: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp / 'labeling.db'}"
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        self.schema = f"atlas_bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        url = make_url(PG_BASE).update_query_dict({"options": f"-csearch_path={self.schema}"})
        self.url = url.render_as_string(hide_password=False)

    def close(self) -> None:
        if self.schema is None:
            return
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '30s'"))
            conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        admin.dispose()


def _bench_assign(
    kind: str, db: Database, stub: Any, svc: Service, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    pid = create_project(stub, "bench-assign")
    out["items"] = args.items
    out["add_items_s"] = add_items(stub, pid, args.items)
    print(f"[{kind}] {args.items} items added in {out['add_items_s']:.1f} s", flush=True)
    for shape, think in (("paced", args.think), ("saturated", 0.0)):
        seconds = args.seconds if shape == "paced" else args.saturated_seconds
        res = run_load(
            svc.target,
            pid,
            annotators=args.annotators,
            procs=args.load_procs,
            seconds=seconds,
            think_s=think,
            prefix=f"{kind}-{shape}",
        )
        out[shape] = res
        rt = res["round_trip"]
        print(
            f"[{kind}] {shape:9s} round trip p50 {rt['p50_ms']:.1f} ms  "
            f"p99 {rt['p99_ms']:.1f} ms  {res['round_trips_per_s']:.0f}/s  "
            f"errors {res['errors']}",
            flush=True,
        )
    out["double_assignments"], rounds = db_double_assignments(db.url, pid)
    for shape_result in (v for v in out.values() if isinstance(v, dict) and "received" in v):
        received = shape_result.pop("received")
        shape_result["client_double_assignments"] = client_double_assignments(
            received, OVERLAP, rounds
        )
    print(f"[{kind}] double assignments (database): {out['double_assignments']}", flush=True)


def bench_backend(
    kind: str, tmp: Path, s3: Any, args: argparse.Namespace, export_sizes: list[int]
) -> dict[str, Any]:
    db = Database(kind, tmp / kind)
    (tmp / kind).mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"database": kind}
    svc = None
    try:
        svc = Service(tmp, s3, db.url, kind)
        channel, stub = stub_for(svc.target)
        try:
            if not args.skip_assign:
                _bench_assign(kind, db, stub, svc, args, out)
            out["exports"] = {}
            for n in export_sizes:
                epid = create_project(stub, f"bench-export-{n}", overlap=1)
                ins = insert_label_rows(db.url, epid, n)
                res = run_export(svc, stub, epid, n)
                res["insert_s"] = ins
                out["exports"][str(n)] = res
                rss = res["peak_rss_mb"] or math.nan
                print(
                    f"[{kind}] export {n} rows: {res['seconds']:.2f} s  "
                    f"{res['rows_per_s']:,.0f} rows/s  peak RSS {rss:.0f} MB "
                    f"(rows inserted in {ins:.1f} s)",
                    flush=True,
                )
        finally:
            channel.close()
    finally:
        if svc is not None:
            svc.stop()
        db.close()
    return out


def main() -> None:
    from pydantic import SecretStr

    from atlas_core.config import S3Settings
    from atlas_core.launcher import SeaweedS3Server
    from bench._results import write_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k items, 30 s, 100k-row export")
    ap.add_argument("--dbs", default="sqlite,postgresql")
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--load-procs", type=int, default=5)
    ap.add_argument("--think", type=float, default=1.0, help="mean think time (s), paced load")
    ap.add_argument("--no-labelstudio", action="store_true")
    ap.add_argument(
        "--ls-rows", type=int, default=100_000, help="Label Studio import cap (its export is slow)"
    )
    ap.add_argument("--ls-import-budget", type=float, default=600.0, help="seconds")
    ap.add_argument("--export-rows", type=int, default=None)
    ap.add_argument(
        "--skip-assign",
        action="store_true",
        help="export only: no assignment load (results go to labeling_export.json)",
    )
    args = ap.parse_args()
    args.items = 10_000 if args.quick else 100_000
    args.seconds = 30.0 if args.quick else 60.0
    args.saturated_seconds = 15.0 if args.quick else 30.0
    export_rows = args.export_rows or (100_000 if args.quick else 1_000_000)
    if args.quick:
        args.ls_rows = min(args.ls_rows, 10_000)
        args.ls_import_budget = min(args.ls_import_budget, 120.0)

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-labeling-"))
    started = time.time()
    payload: dict[str, Any] = {
        "load_average_at_start": load_average(),
        "setup": {
            "task": "text classification, 3 labels",
            "overlap": OVERLAP,
            "items": args.items,
            "annotators": args.annotators,
            "load_processes": args.load_procs,
            "paced_think_s": f"uniform {args.think * 0.5:.2f}..{args.think * 1.5:.2f} between "
            "receiving an item and submitting it (excluded from the round trip)",
            "round_trip": "RequestAssignments(count=1) latency + SubmitAnnotation latency, "
            "measured by the client over real gRPC after a 3 s warm-up",
            "export": "label rows written straight into labeling_label_rows (the table "
            "labels.append_label fills), then SubmitExportJob (Parquet, 100k rows a part) "
            "timed from the submit to SUCCEEDED; peak RSS = VmHWM of the job subprocess",
            "cpus": os.cpu_count(),
        },
        "label_quality": "see bench/labeling_quality.py (bench/results/labeling_quality.json)",
    }
    # Label Studio first: its row count decides the like-for-like export size of ours.
    ls: dict[str, Any] | None = None
    if args.no_labelstudio and not args.skip_assign and not args.quick:
        # Not re-measured: the last full run's Label Studio figures are carried forward,
        # marked with their date and commit, and ours is measured again at their row count.
        ls = carried_labelstudio()
        if ls is not None:
            payload["labelstudio"] = ls
            print(
                f"Label Studio not run: carrying forward {ls['export_rows_per_s']:,.0f} rows/s "
                f"measured {ls['carried_forward']['date']} at {ls['carried_forward']['commit']}",
                flush=True,
            )
    elif not args.no_labelstudio:
        print("Label Studio ...", flush=True)
        ls = run_labelstudio(tmp, args.ls_rows, args.ls_import_budget)
        payload["labelstudio"] = ls
        if "error" in ls:
            print(f"  Label Studio failed: {ls['error'][:2000]}", flush=True)
        else:
            print(
                f"  Label Studio {ls['version']}: {ls['export_rows']} rows exported in "
                f"{ls['export_s']:.2f} s = {ls['export_rows_per_s']:,.0f} rows/s",
                flush=True,
            )
    # A tiny export first: its time is the job's fixed cost (spawning the job process, its
    # imports, opening the runtime, recording the export), reported beside the rows/s.
    export_sizes = [PROBE_ROWS, export_rows] if export_rows > PROBE_ROWS else [export_rows]
    if ls and "export_rows" in ls and ls["export_rows"] != export_rows:
        export_sizes.insert(0, int(ls["export_rows"]))

    weed = SeaweedS3Server(
        tmp / "weed",
        access_key="bench",
        secret_key="bench-secret-key",
        port=0,
        log_dir=tmp / "weed-logs",
    )
    weed.start(timeout=60)
    try:
        s3 = S3Settings(
            endpoint=weed.endpoint,
            access_key=SecretStr("bench"),
            secret_key=SecretStr("bench-secret-key"),
            bucket="bench-labeling",
        )
        payload["backends"] = {}
        for kind in [k.strip() for k in args.dbs.split(",") if k.strip()]:
            payload["backends"][kind] = bench_backend(kind, tmp, s3, args, export_sizes)
    finally:
        weed.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    backends = payload["backends"]
    if not args.skip_assign:
        _assign_summary(payload, backends)
    _export_summary(payload, backends, export_rows, ls)
    payload["load_average_at_end"] = load_average()
    payload["wall_s"] = time.time() - started
    print_table(payload)
    name = "labeling_export" if args.skip_assign else "labeling"
    path = write_results(name, payload, quick=args.quick)
    print(f"wrote {path}")


def carried_labelstudio() -> dict[str, Any] | None:
    """The Label Studio section of the committed ``labeling.json`` (a measured one, or one
    already carried forward), with where it was measured; None if there is none."""
    from bench._results import RESULTS_DIR

    try:
        previous = json.loads((RESULTS_DIR / "labeling.json").read_text())
    except (OSError, ValueError):
        return None
    section = previous.get("labelstudio")
    if not isinstance(section, dict) or not section.get("export_rows_per_s"):
        return None
    if "carried_forward" in section:
        return dict(section)
    run = previous.get("run", {})
    return {
        **section,
        "carried_forward": {
            "date": run.get("date"),
            "recorded_at": run.get("recorded_at"),
            "commit": (run.get("commit") or {}).get("sha"),
            "command": run.get("command"),
            "note": "Label Studio was not run again (--no-labelstudio); these are its figures "
            "from the run named here. Ours is measured in this run at the same row count.",
        },
    }


def _assign_summary(payload: dict[str, Any], backends: dict[str, Any]) -> None:
    paced = {k: b["paced"]["round_trip"] for k, b in backends.items()}
    worst = max(paced, key=lambda k: paced[k]["p99_ms"])
    payload["assign_submit_p99_ms_c50"] = paced[worst]["p99_ms"]
    payload["assign_submit_p99_ms_c50_backend"] = worst
    payload["assign_submit_p50_ms_c50"] = max(p["p50_ms"] for p in paced.values())
    for k, b in backends.items():
        payload[f"assign_submit_p99_ms_c50_{k}"] = b["paced"]["round_trip"]["p99_ms"]
        payload[f"assign_submit_p50_ms_c50_{k}"] = b["paced"]["round_trip"]["p50_ms"]
        payload[f"saturated_p99_ms_c50_{k}"] = b["saturated"]["round_trip"]["p99_ms"]
        payload[f"saturated_round_trips_per_s_{k}"] = b["saturated"]["round_trips_per_s"]
    payload["double_assignments"] = sum(
        b["double_assignments"]["total"]
        + b["paced"]["client_double_assignments"]["total"]
        + b["saturated"]["client_double_assignments"]["total"]
        for b in backends.values()
    )


def _export_summary(
    payload: dict[str, Any],
    backends: dict[str, Any],
    export_rows: int,
    ls: dict[str, Any] | None,
) -> None:
    full = {k: b["exports"][str(export_rows)] for k, b in backends.items()}
    ex_worst = min(full, key=lambda k: full[k]["rows_per_s"])
    payload["export_label_rows"] = export_rows
    payload["export_rows_per_s"] = full[ex_worst]["rows_per_s"]
    payload["export_rows_per_s_backend"] = ex_worst
    payload["export_peak_rss_mb"] = max(f["peak_rss_mb"] or math.nan for f in full.values())
    for k, f in full.items():
        payload[f"export_rows_per_s_{k}"] = f["rows_per_s"]
        payload[f"export_peak_rss_mb_{k}"] = f["peak_rss_mb"]
        probe = backends[k]["exports"].get(str(PROBE_ROWS))
        if probe is not None and export_rows > PROBE_ROWS:
            # The fixed cost taken out: rows/s once the job runs (not the key).
            payload[f"export_fixed_s_{k}"] = probe["seconds"]
            payload[f"export_rows_per_s_after_fixed_{k}"] = (export_rows - PROBE_ROWS) / max(
                f["seconds"] - probe["seconds"], 1e-9
            )
    if ls is not None and "export_rows_per_s" in ls:
        n = str(ls["export_rows"])
        same = {k: b["exports"][n]["rows_per_s"] for k, b in backends.items()}
        payload["labelstudio_rows"] = ls["export_rows"]
        payload["labelstudio_export_rows_per_s"] = ls["export_rows_per_s"]
        payload["ours_export_rows_per_s_at_labelstudio_rows"] = same
        payload["ratio_vs_labelstudio"] = min(same.values()) / ls["export_rows_per_s"]
        if "carried_forward" in ls:
            payload["labelstudio_measured_on"] = ls["carried_forward"]["date"]
            payload["labelstudio_measured_at_commit"] = ls["carried_forward"]["commit"]
        payload["ratio_vs_labelstudio_note"] = (
            f"ours (worse backend) on the same {n} rows / Label Studio's JSON export"
            + (
                f" (Label Studio's figure carried forward from {ls['carried_forward']['date']}, "
                f"{ls['carried_forward']['commit']}; ours from this run)"
                if "carried_forward" in ls
                else ""
            )
            + (
                ""
                if int(n) == export_rows
                else f"; Label Studio was given {n} rows (import cap/budget), ours is also "
                f"given at {export_rows}"
            )
        )
    elif ls is not None:
        payload["labelstudio_export_rows_per_s"] = None
        payload["labelstudio_error"] = ls.get("error")


def print_table(p: dict[str, Any]) -> None:
    print()
    print(
        f"{'backend':10s} {'load':9s} {'p50 ms':>8s} {'p99 ms':>8s} {'req p99':>8s} "
        f"{'sub p99':>8s} {'rt/s':>7s} {'p99/25ms':>9s}"
    )
    for kind, b in p["backends"].items():
        for shape in ("paced", "saturated"):
            if shape not in b:
                continue
            r = b[shape]
            rt = r["round_trip"]
            print(
                f"{kind:10s} {shape:9s} {rt['p50_ms']:8.1f} {rt['p99_ms']:8.1f} "
                f"{r['request']['p99_ms']:8.1f} {r['submit']['p99_ms']:8.1f} "
                f"{r['round_trips_per_s']:7.0f} {rt['p99_ms'] / 25:9.2f}"
            )
    if "double_assignments" in p:
        print(f"double_assignments: {p['double_assignments']}")
    print()
    print(
        f"{'backend':10s} {'rows':>9s} {'s':>7s} {'rows/s':>10s} {'peak RSS MB':>12s} {'/200k':>6s}"
    )
    for kind, b in p["backends"].items():
        for n, e in b["exports"].items():
            print(
                f"{kind:10s} {int(n):9d} {e['seconds']:7.2f} {e['rows_per_s']:10,.0f} "
                f"{e['peak_rss_mb'] or math.nan:12.0f} {e['rows_per_s'] / 200_000:6.2f}"
            )
    if p.get("labelstudio_export_rows_per_s"):
        print(
            f"Label Studio {p['labelstudio_rows']} rows: "
            f"{p['labelstudio_export_rows_per_s']:,.0f} rows/s; "
            f"ours/theirs {p['ratio_vs_labelstudio']:.1f}x (target >= 10x)"
        )
    elif "labelstudio_error" in p:
        print(f"Label Studio: not measured ({str(p['labelstudio_error'])[:300]})")


if __name__ == "__main__":
    main()

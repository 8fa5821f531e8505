"""Chaos under load (issue #33, capability 4): the whole suite on one machine, mixed traffic
from clients that retry with idempotency keys, and ``kill -9`` + restart of every service, the
object store and PostgreSQL, one at a time; then the checks.

Used by ``bench/chaos.py --chaos`` (the figures) and tests/integration/test_chaos.py (a short
run CI keeps honest). The suite is started like ``atlas up`` (atlas_core.launcher: the embedded
SeaweedFS object store, every service as its own process, the suite's credentials and bundle
signing key) except that every service keeps its metadata in a private PostgreSQL started here
(``initdb``/``pg_ctl`` on a free port in a temp dir, never the host's server) when the binaries
exist, else in the default SQLite files.

Traffic lanes (threads, each with its own clients):

- ingest: ``PutRecords`` batches (request id per batch) into an online feature group, and
  online reads (``GetFeatures``) of keys already acknowledged;
- predict: single-row ``Predict`` on a deployed endpoint (reads; errors only counted);
- label: ``RequestAssignments`` + ``SubmitAnnotation`` (request ids) on a labeling project;
- register: ``RegisterModelVersion`` (request id per registration) of a trained bundle;
- train: AutoML training jobs (request id) that register their model into serving.

A write is *acknowledged* when its call returned OK (possibly after retries). Checks after the
chaos: every acknowledged record, annotation and model version is readable (``acked_lost``);
every training job ends SUCCEEDED, or is still QUEUED/RUNNING/INTERRUPTED-resumable after the
wait (``jobs_lost`` counts the others); every model version's and job's bundle loads with its
signature and checksum verified and every offline partition's Parquet object reads
(``half_published``); errors seen by clients while a dependency was down are counted per lane.
"""

from __future__ import annotations

import io
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
HOST = "127.0.0.1"
SERVICES = ("data", "serving", "trainer", "labeling", "graph")
FEATURES = 8
GROUP = "chaos_fg"
JOB_GROUP = "chaos_jobs"  # filled by ingest jobs
JOB_ROWS = 2000  # rows per ingest job, in row groups of 200
ENDPOINT = "chaos"
MODEL = "chaos-model"
REG_MODEL = "chaos-registered"


# -- a private PostgreSQL ---------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl, if any (and, as
    root, a ``postgres`` user to run it as)."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A PostgreSQL cluster of our own in ``root`` on a free loopback port (trust auth, fsync
    on). As root it runs as the ``postgres`` system user (postgres refuses to run as root)."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.data = root / "pgdata"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        self.start()

    def start(self, timeout: float = 60.0) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c max_connections=200"
        deadline = time.monotonic() + timeout
        while True:  # after a kill -9 the old backends may still hold shared memory briefly
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                    "-l", str(self.root / "postgres.log"), "-w", "-t", "60", "start",
                )  # fmt: skip
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host=HOST, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def kill9(self) -> None:
        """SIGKILL the postmaster; its backends exit when they notice (they are not ours to
        signal by name: we wait for the port to close)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass


# -- the suite --------------------------------------------------------------------------------


class ChaosSuite:
    """Object store + every service (launcher code), with kill -9 and restart by name."""

    def __init__(self, root: Path, *, postgres: bool = True) -> None:
        from atlas_core.launcher import Launcher

        self.root = root
        self.pg: PrivatePostgres | None = None
        bin_dir = postgres_bin_dir() if postgres else None
        if bin_dir is not None:
            self.pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="atlas-chaos-pg-")), bin_dir)
        db_urls: dict[str, str] = {}

        class _Launcher(Launcher):
            def service_env(self, spec, creds, s3_endpoint, port, metrics_port, peers):  # type: ignore[no-untyped-def]
                env = super().service_env(spec, creds, s3_endpoint, port, metrics_port, peers)
                if spec.name in db_urls:
                    env[f"ATLAS_{spec.name.upper()}_DATABASE__URL"] = db_urls[spec.name]
                return env

        self.db_urls = db_urls
        self.launcher = _Launcher(root / "suite", s3_port=0, base_port=0)
        self.store_server: Any = None
        self.s3_port = 0
        self.procs: dict[str, Any] = {}  # name -> ProcessInfo
        self.ports: dict[str, int] = {}
        self.downtime_s: dict[str, float] = {}

    # start-up
    def start(self, timeout: float = 180.0) -> None:
        from atlas_core.launcher import ensure_credentials, implemented_services

        if self.pg is not None:
            self.pg.init()
            for name in SERVICES:
                self.pg.create_database(f"atlas_{name}")
                self.db_urls[name] = self.pg.url(f"atlas_{name}")
        self.creds = ensure_credentials(self.launcher.data_dir)
        self._start_store(timeout)
        self.specs = {s.name: s for s in implemented_services()}
        self.ports = self.launcher.service_ports(list(self.specs.values()))
        for name in self.specs:
            self._start_service(name, timeout)

    def _start_store(self, timeout: float) -> None:
        from atlas_core.launcher import SeaweedS3Server

        self.store_server = SeaweedS3Server(
            self.launcher.data_dir / "objectstore",
            access_key=self.creds.s3_access_key,
            secret_key=self.creds.s3_secret_key,
            port=self.s3_port,
            log_dir=self.launcher.log_dir / "objectstore",
        )
        self.store_server.start(timeout=timeout)
        self.s3_port = self.store_server.port
        self.s3_endpoint = self.store_server.endpoint

    def _start_service(self, name: str, timeout: float) -> None:
        from atlas_core.launcher._launcher import wait_serving

        spec = self.specs[name]
        peers = {n: f"{HOST}:{p}" for n, p in self.ports.items()}
        info = self.launcher._start_service(
            spec, self.creds, self.s3_endpoint, peers, self.ports[name]
        )
        self.procs[name] = info
        wait_serving(
            info.address, spec.full_name, pid=info.pid, log=Path(info.log), timeout=timeout
        )

    def address(self, name: str) -> str:
        return f"{HOST}:{self.ports[name]}"

    def settings(self, name: str) -> Any:
        from atlas_core.rpc import ClientSettings

        return ClientSettings(target=self.address(name), token=self.creds.admin_token)

    def s3_settings(self) -> Any:
        from pydantic import SecretStr

        from atlas_core.config import S3Settings

        return S3Settings(
            endpoint=self.s3_endpoint,
            access_key=SecretStr(self.creds.s3_access_key),
            secret_key=SecretStr(self.creds.s3_secret_key),
        )

    # chaos
    def targets(self) -> list[str]:
        """Kill order: the trainer first (its training job is then mid-run), the other
        services, the object store, PostgreSQL."""
        services = sorted(self.specs, key=lambda name: name != "trainer")
        return [*services, "objectstore", *(["postgres"] if self.pg else [])]

    def kill_and_restart(self, name: str, down_s: float, timeout: float = 180.0) -> float:
        """kill -9 ``name`` (a service with its process group: its job subprocesses too),
        leave it down ``down_s`` seconds, start it again and wait until it serves. Returns the
        seconds from the kill until it served again."""
        killed = time.monotonic()
        if name == "postgres":
            assert self.pg is not None
            self.pg.kill9()
            time.sleep(down_s)
            self.pg.start()
        elif name == "objectstore":
            pid = self.store_server.pid
            os.kill(pid, signal.SIGKILL)
            self.store_server._process.wait()
            time.sleep(down_s)
            self._start_store(timeout)
        else:
            pid = self.procs[name].pid
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
            time.sleep(down_s)
            self._start_service(name, timeout)
        took = time.monotonic() - killed
        self.downtime_s[name] = round(took, 2)
        return took

    def stop(self) -> None:
        from atlas_core.launcher._process import terminate

        for info in self.procs.values():
            try:
                os.killpg(info.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for info in self.procs.values():
            if terminate(info.pid, 10.0):
                try:
                    os.killpg(info.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.store_server is not None:
            self.store_server.stop()
        if self.pg is not None:
            self.pg.stop()
            shutil.rmtree(self.pg.root, ignore_errors=True)

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for name, info in self.procs.items():
            try:
                for line in Path(f"/proc/{info.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1]) / 1024
            except OSError:
                pass
        return out


def _reap(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)


# -- clients that retry -----------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw: per lane, calls that succeeded and errors by status."""

    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    # per lane: when its current run of failed calls began, and the longest such run (s)
    failing_since: dict[str, float] = field(default_factory=dict)
    longest_outage_s: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, lane: str, what: str) -> None:
        with self.lock:
            self.errors[f"{lane}:{what}"] += 1
            self.failing_since.setdefault(lane, time.monotonic())

    def success(self, lane: str) -> None:
        with self.lock:
            self.ok[lane] += 1
            began = self.failing_since.pop(lane, None)
            if began is not None:
                took = time.monotonic() - began
                self.longest_outage_s[lane] = max(self.longest_outage_s.get(lane, 0.0), took)


RETRY_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "RESOURCE_EXHAUSTED"}


def retrying(
    tally: Tally, lane: str, call: Callable[[], T], *, budget_s: float, stop: threading.Event
) -> T | None:
    """``call()`` retried (exponential backoff from 0.2 s to 3 s) on errors a client should
    retry with the same idempotency key; every failed attempt is counted. None when the
    budget ran out or the error is not retryable (the write is then not acknowledged)."""
    from atlas_core.errors import AtlasError

    deadline = time.monotonic() + budget_s
    delay = 0.2
    while True:
        try:
            result = call()
        except AtlasError as exc:
            code = exc.code.name if hasattr(exc.code, "name") else str(exc.code)
            tally.count(lane, code)
            if code not in RETRY_CODES or time.monotonic() + delay > deadline:
                with tally.lock:
                    tally.gave_up[f"{lane}:{code}:{exc.message[:160]}"] += 1
                return None
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
            continue
        tally.success(lane)
        return result


@dataclass
class Acked:
    records: list[int] = field(default_factory=list)
    items: list[tuple[str, str]] = field(default_factory=list)  # project, item
    annotations: list[tuple[str, str, str]] = field(default_factory=list)  # project,item,ann
    versions: list[int] = field(default_factory=list)
    truths: list[tuple[str, int]] = field(default_factory=list)  # prediction id, outcome
    truth_unmatched: int = 0  # outcomes for predictions a killed replica had not indexed
    predictions: list[tuple[float, str]] = field(default_factory=list)  # to label: (t, id)
    jobs: list[str] = field(default_factory=list)
    data_jobs: list[tuple[str, int]] = field(default_factory=list)  # job id, first key
    export_jobs: list[str] = field(default_factory=list)
    read_misses: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ts(us: int) -> Any:
    from google.protobuf import timestamp_pb2

    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(us)
    return t


T0_US = 1_700_000_000_000_000


def _records(keys: range) -> list[Any]:
    from atlas.data.v1 import data_service_pb2 as pb

    return [
        pb.FeatureRecord(
            entity_key=pb.EntityKey(int64_key=k),
            event_time=_ts(T0_US + k * 1000),
            float32_values=np.full(FEATURES, k, "<f4").tobytes(),
        )
        for k in keys
    ]


# -- set-up of the workload -------------------------------------------------------------------


def _dataset(store: Any) -> tuple[str, list[dict[str, float]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x = x.iloc[:, :FEATURES]
    x.columns = [f"f{i}" for i in range(FEATURES)]
    frame = x.assign(malignant=(y == 0).astype("int64"))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    ref = store.put_bytes("uploads/chaos-train.parquet", buf.getvalue())
    rows = [{k: float(v) for k, v in r.items()} for r in x.head(64).to_dict("records")]
    return ref.uri, rows


def train_spec(uri: str, wall_s: float, register: str = MODEL) -> Any:
    """A small AutoML job (linear models, holdout, no ensemble: seconds of work) that
    registers its model into serving."""
    from atlas.trainer.v1 import trainer_service_pb2 as tpb
    from atlas_core.clients import automl_spec

    spec = automl_spec(
        target="malignant", artifact_uri=uri, wall_seconds=wall_s, max_trials=3, seed=0,
        register=register, alias="candidate",
    )  # fmt: skip
    spec.automl.search_space.model_families.append(tpb.MODEL_FAMILY_LINEAR)
    spec.automl.search_space.disable_ensemble = True
    spec.automl.validation = tpb.VALIDATION_METHOD_HOLDOUT
    spec.automl.parallel_trials = 1
    return spec


@dataclass
class Workload:
    suite: ChaosSuite
    train_uri: str = ""
    rows: list[dict[str, float]] = field(default_factory=list)
    bundle_uri: str = ""
    project_id: str = ""

    def prepare(
        self, *, items: int, train_wall_s: float, quality_window_s: float | None = None
    ) -> None:
        """Feature group, a trained model deployed on an endpoint (its quality window
        ``quality_window_s``; None: the service's hour), a labeling project with ``items``
        items."""
        from atlas.common.v1 import common_pb2
        from atlas.data.v1 import data_service_pb2 as dpb
        from atlas.labeling.v1 import labeling_service_pb2 as lpb
        from atlas.serving.v1 import serving_service_pb2 as spb
        from atlas_core.clients import DataClient, LabelingClient, ServingClient, TrainerClient
        from atlas_core.storage import open_artifact_store

        s = self.suite
        store = open_artifact_store(s.s3_settings())
        self.train_uri, self.rows = _dataset(store)
        with DataClient(s.settings("data")) as data:
            data.create_feature_group(
                dpb.FeatureGroupSpec(
                    name=GROUP,
                    entity_key="id",
                    entity_key_type=dpb.ENTITY_KEY_TYPE_INT64,
                    event_time_column="ts",
                    features=[
                        dpb.FeatureSpec(
                            name="v", dtype=dpb.FEATURE_TYPE_FLOAT32_VECTOR, dims=FEATURES
                        )
                    ],
                )
            )
            data.create_feature_group(
                dpb.FeatureGroupSpec(
                    name=JOB_GROUP,
                    entity_key="id",
                    entity_key_type=dpb.ENTITY_KEY_TYPE_INT64,
                    event_time_column="ts",
                    features=[dpb.FeatureSpec(name="x", dtype=dpb.FEATURE_TYPE_FLOAT64)],
                )
            )
        with TrainerClient(s.settings("trainer")) as trainer:
            job = trainer.submit(train_spec(self.train_uri, train_wall_s), request_id="prep")
            done = trainer.wait(job.status.job_id)
            if done.status.state != common_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"preparing training job failed: {done.status.error.message}")
            self.bundle_uri = done.result.model_bundle.uri
            version = done.result.registration.model_version.version
        with ServingClient(s.settings("serving")) as serving:
            variant = spb.Variant(name="blue", role=spb.VARIANT_ROLE_LIVE, weight=100)
            variant.model.model_name, variant.model.version = MODEL, version
            spec = spb.EndpointSpec(name=ENDPOINT, variants=[variant])
            spec.capacity.warm = True
            spec.quality.enabled, spec.quality.sample_fraction = True, 1.0
            if quality_window_s is not None:
                spec.quality.window.FromTimedelta(timedelta(seconds=quality_window_s))
            serving.create_endpoint(spec, request_id="prep-endpoint")
            serving.predict(ENDPOINT, self.rows[0])
        with LabelingClient(s.settings("labeling")) as labeling:
            project = labeling.create_project(
                lpb.ProjectSpec(
                    name="chaos",
                    task_type=lpb.TASK_TYPE_TEXT_CLASSIFICATION,
                    labels=[lpb.LabelDefinition(name="a"), lpb.LabelDefinition(name="b")],
                ),
                request_id="prep-project",
            )
            self.project_id = project.project_id
            for start in range(0, items, 200):
                labeling.add_texts(
                    self.project_id,
                    [f"item {i}" for i in range(start, min(items, start + 200))],
                    request_id=f"prep-items-{start}",
                )


# -- traffic lanes ----------------------------------------------------------------------------


def _lane_ingest(w: Workload, acked: Acked, tally: Tally, stop: threading.Event, budget: float,
                 batch: int, pause: float) -> None:  # fmt: skip
    from atlas_core.clients import DataClient

    rng = random.Random(1)
    with DataClient(w.suite.settings("data"), timeout=10) as data:
        i = 0
        while not stop.is_set():
            keys = range(i * batch, (i + 1) * batch)
            done = retrying(
                tally, "ingest",
                lambda k=keys, i=i: data.put_records(GROUP, _records(k), request_id=f"ingest-{i}"),
                budget_s=budget, stop=stop,
            )  # fmt: skip
            if done is not None:
                with acked.lock:
                    acked.records.extend(keys)
            i += 1
            with acked.lock:
                sample = rng.sample(acked.records, min(20, len(acked.records)))
            if sample:
                got = retrying(
                    tally, "read", lambda s=sample: data.get_features(GROUP, s),
                    budget_s=budget, stop=stop,
                )  # fmt: skip
                if got is not None and not bool(got.found.all()):
                    with acked.lock:
                        acked.read_misses += int((~got.found).sum())
            time.sleep(pause)


def _lane_predict(
    w: Workload, acked: Acked, tally: Tally, stop: threading.Event, pause: float
) -> None:
    from atlas_core.clients import ServingClient
    from atlas_core.errors import AtlasError

    with ServingClient(w.suite.settings("serving"), timeout=5) as serving:
        i = 0
        while not stop.is_set():
            try:
                answer = serving.predict(ENDPOINT, w.rows[i % len(w.rows)])
                tally.success("predict")
                if i % 4 == 0:  # every fourth gets its outcome from the truth lane
                    with acked.lock:
                        acked.predictions.append((time.monotonic(), answer.prediction_id))
            except AtlasError as exc:
                tally.count("predict", exc.code.name)
            i += 1
            time.sleep(pause)


def _lane_label(w: Workload, acked: Acked, tally: Tally, stop: threading.Event, budget: float,
                pause: float) -> None:  # fmt: skip
    from atlas.labeling.v1 import labeling_service_pb2 as lpb
    from atlas_core.clients import LabelingClient

    value = lpb.AnnotationValue(classes=lpb.ClassLabels(labels=["a"]))
    with LabelingClient(w.suite.settings("labeling"), timeout=10) as labeling:
        k = 0
        while not stop.is_set():
            added = retrying(
                tally, "label",
                lambda k=k: labeling.add_texts(
                    w.project_id, [f"live {k}.{j}" for j in range(4)], request_id=f"items-{k}"
                ),
                budget_s=budget, stop=stop,
            )  # fmt: skip
            if added is not None:
                with acked.lock:
                    acked.items.extend((w.project_id, item) for item in added if item)
            leases = retrying(
                tally, "label",
                lambda k=k: labeling.request_assignments(
                    w.project_id, 4, annotator="chaos", request_id=f"lease-{k}"
                ),
                budget_s=budget, stop=stop,
            )  # fmt: skip
            k += 1
            for lease in leases or []:
                resp = retrying(
                    tally, "label",
                    lambda a=lease.assignment_id: labeling.submit_annotation(
                        a, value, annotator="chaos", request_id=f"ann-{a}"
                    ),
                    budget_s=budget, stop=stop,
                )  # fmt: skip
                if resp is not None:
                    with acked.lock:
                        acked.annotations.append(
                            (w.project_id, lease.item.item_id, resp.annotation.annotation_id)
                        )
            time.sleep(pause)


TRUTH_DELAY_S = 4.0  # past the replica's index flush (2 x flush_seconds + 1 s)


def _lane_truth(w: Workload, acked: Acked, tally: Tally, stop: threading.Event, budget: float,
                pause: float) -> None:  # fmt: skip
    """Outcomes (ground-truth labels) for served predictions, 10 per call, request ids."""
    from atlas.serving.v1 import serving_service_pb2 as spb
    from atlas_core.clients import ServingClient
    from atlas_core.clients.serving import ground_truth

    with ServingClient(w.suite.settings("serving"), timeout=10) as serving:
        k = 0
        while not stop.is_set():
            now = time.monotonic()
            with acked.lock:
                ready = [p for t, p in acked.predictions[:10] if now - t > TRUTH_DELAY_S]
                del acked.predictions[: len(ready)]
            if ready:
                items = [ground_truth(k % 2, prediction_id=p) for p in ready]
                resp = retrying(
                    tally, "truth",
                    lambda k=k, items=items: serving.attach_ground_truth(
                        ENDPOINT, items, request_id=f"truth-{k}"
                    ),
                    budget_s=budget, stop=stop,
                )  # fmt: skip
                if resp is not None:
                    with acked.lock:
                        for pid, result in zip(ready, resp.results, strict=True):
                            if result.status == spb.GROUND_TRUTH_STATUS_REJECTED:
                                acked.truth_unmatched += 1
                            else:
                                acked.truths.append((pid, k % 2))
                k += 1
            time.sleep(pause)


def _lane_register(w: Workload, acked: Acked, tally: Tally, stop: threading.Event, budget: float,
                   pause: float) -> None:  # fmt: skip
    from atlas_core.clients import ServingClient

    with ServingClient(w.suite.settings("serving"), timeout=10) as serving:
        j = 0
        while not stop.is_set():
            version = retrying(
                tally, "register",
                lambda j=j: serving.register(REG_MODEL, w.bundle_uri, request_id=f"reg-{j}"),
                budget_s=budget, stop=stop,
            )  # fmt: skip
            if version is not None:
                with acked.lock:
                    acked.versions.append(version.ref.version)
            j += 1
            time.sleep(pause)


def _lane_train(w: Workload, acked: Acked, tally: Tally, stop: threading.Event, budget: float,
                jobs: int, wall_s: float, every_s: float) -> None:  # fmt: skip
    from atlas_core.clients import TrainerClient

    with TrainerClient(w.suite.settings("trainer"), timeout=10) as trainer:
        for n in range(jobs):
            if stop.is_set():
                return
            job = retrying(
                tally, "train",
                lambda n=n: trainer.submit(train_spec(w.train_uri, wall_s), request_id=f"job-{n}"),
                budget_s=budget, stop=stop,
            )  # fmt: skip
            if job is not None:
                with acked.lock:
                    acked.jobs.append(job.status.job_id)
            stop.wait(every_s)


def _ingest_file(store: Any, n: int) -> tuple[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = 1_000_000 + n * JOB_ROWS
    ids = np.arange(first, first + JOB_ROWS, dtype=np.int64)
    table = pa.table(
        {
            "id": ids,
            "ts": pa.array(T0_US + ids, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "x": ids.astype(np.float64),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=200)
    return store.put_bytes(f"uploads/chaos-ingest-{n}.parquet", buf.getvalue()).uri, first


def _lane_jobs(w: Workload, acked: Acked, tally: Tally, stop: threading.Event, budget: float,
               every_s: float) -> None:  # fmt: skip
    """A data ingest job (a fresh Parquet file) and a labeling export job in turn, every
    ``every_s`` seconds, so some job of each service is running when it is killed."""
    from atlas.common.v1 import common_pb2
    from atlas.data.v1 import data_service_pb2 as dpb
    from atlas.labeling.v1 import labeling_service_pb2 as lpb
    from atlas_core.clients import DataClient, LabelingClient
    from atlas_core.storage import open_artifact_store

    store = open_artifact_store(w.suite.s3_settings())
    with (
        DataClient(w.suite.settings("data"), timeout=10) as data,
        LabelingClient(w.suite.settings("labeling"), timeout=10) as labeling,
    ):
        n = 0
        while not stop.is_set():
            if n % 2 == 0:
                upload = retrying(
                    tally, "jobs", lambda n=n: _ingest_file(store, n), budget_s=budget, stop=stop
                )
                if upload is not None:
                    uri, first = upload
                    spec = dpb.IngestSpec(
                        feature_group=common_pb2.FeatureGroupRef(name=JOB_GROUP),
                        source=dpb.ParquetSource(artifacts=[common_pb2.ArtifactRef(uri=uri)]),
                    )
                    job = retrying(
                        tally, "jobs",
                        lambda n=n, spec=spec: data.submit_ingest(spec, request_id=f"job-i{n}"),
                        budget_s=budget, stop=stop,
                    )  # fmt: skip
                    if job is not None:
                        with acked.lock:
                            acked.data_jobs.append((job.status.job_id, first))
            else:
                spec = lpb.ExportSpec(project_id=w.project_id, rows_per_part=200)
                job = retrying(
                    tally, "jobs",
                    lambda n=n, spec=spec: labeling.submit_export(spec, request_id=f"export-{n}"),
                    budget_s=budget, stop=stop,
                )  # fmt: skip
                if job is not None:
                    with acked.lock:
                        acked.export_jobs.append(job.status.job_id)
            n += 1
            stop.wait(every_s)


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosPlan:
    warmup_s: float = 5.0  # traffic before the first kill
    between_s: float = 5.0  # traffic between a restart and the next kill
    down_s: float = 2.0  # how long a killed process stays down
    after_s: float = 5.0  # traffic after the last restart
    items: int = 40  # to start with; the label lane adds more as it goes
    ingest_batch: int = 50
    ingest_pause_s: float = 0.05
    predict_pause_s: float = 0.02
    label_pause_s: float = 0.1
    truth_pause_s: float = 0.3
    register_pause_s: float = 1.0
    train_jobs: int = 2
    train_wall_s: float = 30.0
    train_every_s: float = 20.0
    job_every_s: float = 6.0  # data ingest and labeling export jobs, in turn
    retry_budget_s: float = 120.0
    job_wait_s: float = 300.0
    postgres: bool = True


def run_chaos(root: Path, plan: ChaosPlan, echo: Callable[[str], None] = print) -> dict[str, Any]:
    suite = ChaosSuite(root, postgres=plan.postgres)
    out: dict[str, Any] = {}
    try:
        t = time.monotonic()
        suite.start()
        echo(f"suite up in {time.monotonic() - t:.1f}s (postgres: {suite.pg is not None})")
        w = Workload(suite)
        t = time.monotonic()
        w.prepare(items=plan.items, train_wall_s=plan.train_wall_s)
        echo(f"workload prepared in {time.monotonic() - t:.1f}s")
        out.update(_chaos(suite, w, plan, echo))
    finally:
        suite.stop()
    return out


@contextmanager
def _lanes(w: Workload, plan: ChaosPlan, acked: Acked, tally: Tally) -> Iterator[threading.Event]:
    stop = threading.Event()
    b = plan.retry_budget_s
    threads = [
        threading.Thread(
            target=_lane_ingest,
            args=(w, acked, tally, stop, b, plan.ingest_batch, plan.ingest_pause_s),
        ),
        threading.Thread(target=_lane_predict, args=(w, acked, tally, stop, plan.predict_pause_s)),
        threading.Thread(target=_lane_truth, args=(w, acked, tally, stop, b, plan.truth_pause_s)),
        threading.Thread(target=_lane_label, args=(w, acked, tally, stop, b, plan.label_pause_s)),
        threading.Thread(
            target=_lane_register, args=(w, acked, tally, stop, b, plan.register_pause_s)
        ),
        threading.Thread(
            target=_lane_train,
            args=(w, acked, tally, stop, b, plan.train_jobs, plan.train_wall_s, plan.train_every_s),
        ),
        threading.Thread(target=_lane_jobs, args=(w, acked, tally, stop, b, plan.job_every_s)),
    ]
    for th in threads:
        th.start()
    try:
        yield stop
    finally:
        stop.set()
        for th in threads:
            th.join(plan.retry_budget_s + 30)


def _chaos(suite: ChaosSuite, w: Workload, plan: ChaosPlan, echo: Callable[[str], None]) -> dict:
    acked, tally = Acked(), Tally()
    errors_by_kill: dict[str, int] = {}
    started = time.monotonic()
    with _lanes(w, plan, acked, tally):
        time.sleep(plan.warmup_s)
        for name in suite.targets():
            before = sum(tally.errors.values())
            took = suite.kill_and_restart(name, plan.down_s)
            time.sleep(plan.between_s)
            errors_by_kill[name] = sum(tally.errors.values()) - before
            echo(f"  kill -9 {name}: serving again after {took:.1f}s; "
                 f"{errors_by_kill[name]} client errors")  # fmt: skip
        time.sleep(plan.after_s)
    traffic_s = time.monotonic() - started
    echo(f"traffic stopped after {traffic_s:.0f}s: ok {dict(tally.ok)}")
    checks = _check(suite, w, plan, acked)
    return {
        "chaos_postgres": suite.pg is not None,
        "chaos_targets": suite.targets(),
        "chaos_restart_s": suite.downtime_s,
        "chaos_traffic_s": round(traffic_s, 1),
        "chaos_calls_ok": dict(tally.ok),
        "chaos_client_errors": dict(tally.errors),
        "chaos_client_errors_total": sum(tally.errors.values()),
        "chaos_client_errors_by_kill": errors_by_kill,
        "chaos_longest_client_outage_s": {
            k: round(v, 1) for k, v in tally.longest_outage_s.items()
        },
        "chaos_gave_up": dict(tally.gave_up),
        "chaos_lanes_still_failing": sorted(tally.failing_since),
        "chaos_acked": {
            "records": len(acked.records),
            "items": len(acked.items),
            "annotations": len(acked.annotations),
            "model_versions": len(acked.versions),
            "ground_truth": len(acked.truths),
            "training_jobs": len(acked.jobs),
            "data_jobs": len(acked.data_jobs),
            "export_jobs": len(acked.export_jobs),
        },
        "chaos_online_read_misses_during_run": acked.read_misses,
        # outcomes refused because the prediction's record was still in a killed replica's
        # buffer (predictions are indexed asynchronously, docs/serving.md): not acknowledged
        "chaos_ground_truth_unmatched": acked.truth_unmatched,
        **checks,
    }


# -- the checks -------------------------------------------------------------------------------


def _wait(get: Callable[[str], Any], job_id: str, deadline: float) -> Any:
    """The job once it ended, or as it is at ``deadline``."""
    from atlas.common.v1 import common_pb2

    ended = (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED,
             common_pb2.JOB_STATE_CANCELLED)  # fmt: skip
    while True:
        job = get(job_id)
        if job.status.state in ended or time.monotonic() > deadline:
            return job
        time.sleep(1.0)


def _check(suite: ChaosSuite, w: Workload, plan: ChaosPlan, acked: Acked) -> dict[str, Any]:
    from atlas.common.v1 import common_pb2
    from atlas.data.v1 import data_service_pb2 as dpb
    from atlas.serving.v1 import serving_service_pb2 as spb
    from atlas.trainer.v1 import trainer_service_pb2 as tpb
    from atlas_core.bundles import BundleTrust, load_bundle
    from atlas_core.clients import DataClient, LabelingClient, ServingClient, TrainerClient
    from atlas_core.clients.serving import ground_truth
    from atlas_core.errors import NotFound
    from atlas_core.storage import open_artifact_store

    lost: dict[str, Any] = {}
    with DataClient(suite.settings("data")) as data:
        keys = sorted(set(acked.records))
        missing = 0
        for start in range(0, len(keys), 1000):
            got = data.get_features(GROUP, keys[start : start + 1000])
            missing += int((~got.found).sum())
            ok = got.float32[got.found, 0] == np.array(keys[start : start + 1000])[got.found]
            missing += int((~ok).sum())
        lost["records"] = missing
        # staged offline rows are published (eventually): wait a little for the flush
        deadline = time.monotonic() + 60
        while True:
            parts = list(
                data.stub.ListOfflinePartitions(
                    dpb.ListOfflinePartitionsRequest(
                        feature_group=common_pb2.FeatureGroupRef(name=GROUP),
                        page=common_pb2.PageRequest(page_size=1000),
                    )
                ).partitions
            )
            offline_rows = sum(p.row_count for p in parts)
            if offline_rows >= len(keys) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    with LabelingClient(suite.settings("labeling")) as labeling:
        missing = 0
        for project, item, annotation in acked.annotations:
            ids = {a.annotation_id for a in labeling.get_item(project, item).annotations}
            missing += annotation not in ids
        lost["annotations"] = missing
        missing = 0
        for project, item in acked.items:
            try:
                labeling.get_item(project, item)
            except NotFound:
                missing += 1
        lost["items"] = missing
    trust = BundleTrust.from_files([suite.creds.signing_public_key_file])
    store = open_artifact_store(suite.s3_settings())
    half: list[str] = []

    def loads(uri: str) -> None:
        try:
            load_bundle(store, store.key_for_uri(uri), trust=trust)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            half.append(f"{uri}: {type(exc).__name__}: {exc}"[:300])

    def parquet_readable(uri: str) -> None:
        import pyarrow.parquet as pq

        try:
            pq.read_metadata(io.BytesIO(store.get_bytes(store.key_for_uri(uri))))
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            half.append(f"{uri}: {type(exc).__name__}: {exc}"[:300])

    with ServingClient(suite.settings("serving")) as serving:
        missing = 0
        for version in acked.versions:
            try:
                serving.get_version(REG_MODEL, version)
            except NotFound:
                missing += 1
        lost["model_versions"] = missing
        missing = 0
        for start in range(0, len(acked.truths), 500):
            chunk = acked.truths[start : start + 500]
            resp = serving.attach_ground_truth(
                ENDPOINT,
                [ground_truth(outcome, prediction_id=pid) for pid, outcome in chunk],
                request_id=f"check-truth-{start}",
            )
            missing += sum(r.status != spb.GROUND_TRUTH_STATUS_DUPLICATE for r in resp.results)
        lost["ground_truth"] = missing
        seen_bundles = set()
        for model in serving.list_models():
            for v in serving.list_versions(model.name):
                if v.bundle.uri not in seen_bundles:
                    seen_bundles.add(v.bundle.uri)
                    loads(v.bundle.uri)
    TERMINAL = (
        common_pb2.JOB_STATE_SUCCEEDED,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
    )
    jobs_lost: list[str] = []
    jobs_pending: list[str] = []
    jobs_resumed = 0
    job_states: Counter[str] = Counter()
    with TrainerClient(suite.settings("trainer")) as trainer:
        deadline = time.monotonic() + plan.job_wait_s
        for job_id in acked.jobs:
            while True:
                job = trainer.get(job_id)
                state = job.status.state
                if state in TERMINAL or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            job_states[common_pb2.JobState.Name(state)] += 1
            jobs_resumed += job.status.attempt > 1
            if state == common_pb2.JOB_STATE_SUCCEEDED:
                if job.result.model_bundle.uri not in seen_bundles:
                    loads(job.result.model_bundle.uri)
                reg = job.result.registration
                if reg.state == tpb.REGISTRATION_STATE_FAILED:
                    jobs_lost.append(f"{job_id}: registration failed: {reg.error}"[:300])
            elif state in (common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED):
                jobs_lost.append(f"{job_id}: {job.status.error.message}"[:300])
            elif state == common_pb2.JOB_STATE_INTERRUPTED and not job.status.resumable:
                jobs_lost.append(f"{job_id}: interrupted and not resumable")
            else:  # still queued/running after the wait: it goes on, not lost
                jobs_pending.append(f"{job_id}: {common_pb2.JobState.Name(state)}")
    with DataClient(suite.settings("data")) as data:
        for job_id, first in acked.data_jobs:
            job = _wait(data.get_job, job_id, deadline)
            state = job.status.state
            job_states[common_pb2.JobState.Name(state)] += 1
            jobs_resumed += job.status.attempt > 1
            if state == common_pb2.JOB_STATE_SUCCEEDED:  # its rows are acknowledged now
                for start in range(first, first + JOB_ROWS, 1000):
                    got = data.get_features(JOB_GROUP, list(range(start, start + 1000)))
                    lost["ingest_job_records"] = lost.get("ingest_job_records", 0) + int(
                        (~got.found).sum()
                    )
            elif state in TERMINAL or not job.status.resumable:
                jobs_lost.append(f"data {job_id}: {job.status.error.message}"[:300])
            else:
                jobs_pending.append(f"data {job_id}: {common_pb2.JobState.Name(state)}")
    with LabelingClient(suite.settings("labeling")) as labeling:
        for job_id in acked.export_jobs:
            job = _wait(labeling.get_job, job_id, deadline)
            state = job.status.state
            job_states[common_pb2.JobState.Name(state)] += 1
            jobs_resumed += job.status.attempt > 1
            if state == common_pb2.JOB_STATE_SUCCEEDED:
                for part in job.export_result.parts or [job.export_result.artifact]:
                    if part.uri:
                        parquet_readable(part.uri)
            elif state in TERMINAL or not job.status.resumable:
                jobs_lost.append(f"export {job_id}: {job.status.error.message}"[:300])
            else:
                jobs_pending.append(f"export {job_id}: {common_pb2.JobState.Name(state)}")
    for p in parts:
        parquet_readable(p.artifact.uri)
    return {
        "acked_lost": sum(lost.values()),
        "acked_lost_by_kind": lost,
        "jobs_lost": len(jobs_lost),
        "jobs_lost_detail": jobs_lost,
        "jobs_pending": jobs_pending,
        "jobs_resumed": jobs_resumed,
        "job_states": dict(job_states),
        "half_published": len(half),
        "half_published_detail": half,
        "bundles_checked": len(seen_bundles),
        "offline_partitions_checked": len(parts),
        "offline_rows": offline_rows,
        "offline_rows_missing": max(0, len(set(acked.records)) - offline_rows),
    }


def new_root(prefix: str = "atlas-chaos-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def run_id() -> str:
    return uuid.uuid4().hex[:8]


# -- soak: the whole suite under steady mixed traffic, RSS of every process ------------------


@dataclass(frozen=True)
class SoakPlan:
    """Steady traffic (no kills): the chaos lanes at a gentler pace, so the host keeps up for
    half an hour and the stores grow slowly."""

    minutes: float = 30.0
    every_s: float = 10.0  # RSS sampling period
    items: int = 40
    ingest_batch: int = 20
    ingest_pause_s: float = 0.25
    predict_pause_s: float = 0.05
    label_pause_s: float = 0.5
    truth_pause_s: float = 0.5
    register_pause_s: float = 10.0
    train_jobs: int = 6  # one every train_every_s, short
    train_wall_s: float = 20.0
    train_every_s: float = 240.0
    job_every_s: float = 30.0
    retry_budget_s: float = 120.0
    postgres: bool = True
    fit_fraction: float = 2 / 3  # the slope is fitted over the last 2/3 (caches fill first)
    # The endpoint's quality window (labelled predictions kept for its metrics) is bounded by
    # time: filling, it grows serving's memory by design. As long as the unfitted first part
    # of the soak, it is full when the fit starts; None keeps the service's default (an hour).
    full_quality_window: bool = True

    @property
    def quality_window_s(self) -> float | None:
        if not self.full_quality_window:
            return None
        return round(self.minutes * 60 * (1 - self.fit_fraction), 1)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = _children(pid), []
    while todo:
        child = todo.pop()
        seen.append(child)
        todo += _children(child)
    return seen


def memory_mb(pid: int) -> tuple[float, float, float] | None:
    """(VmRSS, RssAnon, Pss) in MB. RSS counts file pages of memory-mapped stores (LMDB, the
    object store's volumes) too, RssAnon only private heap — what a leak grows; Pss shares
    shared memory among the processes mapping it, so PostgreSQL's backends, which each touch
    more of the shared buffers as they run, add up to the buffers' size once, not N times."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    found = {}
    for line in lines + rollup:
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon", "Pss"):
            found[key] = int(line.split()[1]) / 1024
    if "VmRSS" not in found:
        return None
    return found["VmRSS"], found.get("RssAnon", 0.0), found.get("Pss", 0.0)


def suite_processes(suite: ChaosSuite) -> dict[str, list[int]]:
    """Every process of the suite by role: each service's main process, its workers (the
    processes it started: job subprocesses, inference or training pools), the object store
    and PostgreSQL (postmaster and its backends)."""
    out: dict[str, list[int]] = {}
    for name, info in suite.procs.items():
        out[name] = [info.pid]
        kids = descendants(info.pid)
        if kids:
            out[f"{name}_workers"] = kids
    store = suite.store_server.pid
    out["objectstore"] = [store, *descendants(store)]
    if suite.pg is not None:
        out["postgres"] = [suite.pg.pid, *descendants(suite.pg.pid)]
    return out


def slope_mb_per_hour(samples: list[tuple[float, float]], since_s: float) -> float | None:
    fit = [(t, v) for t, v in samples if t >= since_s]
    if len(fit) < 3:
        return None
    hours = np.array([t for t, _ in fit]) / 3600
    return float(np.polyfit(hours, np.array([v for _, v in fit]), 1)[0])


def run_soak(root: Path, plan: SoakPlan, echo: Callable[[str], None] = print) -> dict[str, Any]:
    suite = ChaosSuite(root, postgres=plan.postgres)
    try:
        suite.start()
        w = Workload(suite)
        w.prepare(
            items=plan.items,
            train_wall_s=plan.train_wall_s,
            quality_window_s=plan.quality_window_s,
        )
        echo(f"soak: suite up, traffic for {plan.minutes} min")
        return _soak(suite, w, plan, echo)
    finally:
        suite.stop()


def _soak(suite: ChaosSuite, w: Workload, plan: SoakPlan, echo: Callable[[str], None]) -> dict:
    acked, tally = Acked(), Tally()
    lanes = ChaosPlan(
        items=plan.items, ingest_batch=plan.ingest_batch, ingest_pause_s=plan.ingest_pause_s,
        predict_pause_s=plan.predict_pause_s, label_pause_s=plan.label_pause_s,
        truth_pause_s=plan.truth_pause_s, register_pause_s=plan.register_pause_s,
        train_jobs=plan.train_jobs, train_wall_s=plan.train_wall_s,
        train_every_s=plan.train_every_s, job_every_s=plan.job_every_s,
        retry_budget_s=plan.retry_budget_s,
    )  # fmt: skip
    rss: dict[str, list[tuple[float, float]]] = {}
    anon: dict[str, list[tuple[float, float]]] = {}
    pss: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, int] = {}
    loads: list[float] = []
    seconds = plan.minutes * 60
    started = time.monotonic()
    with _lanes(w, lanes, acked, tally) as stop:
        while (t := time.monotonic() - started) < seconds and not stop.is_set():
            for role, pids in suite_processes(suite).items():
                got = [m for m in (memory_mb(p) for p in pids) if m is not None]
                rss.setdefault(role, []).append((t, sum(m[0] for m in got)))
                anon.setdefault(role, []).append((t, sum(m[1] for m in got)))
                pss.setdefault(role, []).append((t, sum(m[2] for m in got)))
                counts[role] = max(counts.get(role, 0), len(got))
            loads.append(os.getloadavg()[0])
            if len(loads) % 30 == 1:
                total = sum(v[-1][1] for v in rss.values())
                echo(f"  soak t={t:.0f}s total RSS {total:.0f} MB, load {loads[-1]:.1f}")
            time.sleep(plan.every_s)
    since = seconds * (1 - plan.fit_fraction)
    # One process: its RSS. A group of processes (PostgreSQL, a service's workers): the sum of
    # their Pss, which counts shared pages once.
    headline = {r: pss[r] if counts[r] > 1 or r.endswith("_workers") else s
                for r, s in rss.items()}  # fmt: skip
    growth = {role: slope_mb_per_hour(s, since) for role, s in headline.items()}
    # worker processes come and go (job subprocesses): their sum is not a leak signal
    steady = {r: g for r, g in growth.items() if g is not None and not r.endswith("_workers")}
    return {
        "soak_scope": "whole suite (every service, its workers, object store, PostgreSQL)",
        "soak_minutes": plan.minutes,
        "soak_sample_every_s": plan.every_s,
        "soak_fit": f"least squares over the last {plan.fit_fraction:.2f} of the soak",
        "soak_quality_window_s": plan.quality_window_s,
        "soak_calls_ok": dict(tally.ok),
        "soak_client_errors": dict(tally.errors),
        "soak_acked": {
            "records": len(acked.records),
            "items": len(acked.items),
            "annotations": len(acked.annotations),
            "model_versions": len(acked.versions),
            "training_jobs": len(acked.jobs),
            "data_jobs": len(acked.data_jobs),
            "export_jobs": len(acked.export_jobs),
        },  # fmt: skip
        "soak_processes": counts,
        "soak_measure": "RSS of a single process, sum of Pss for a group (postgres, workers)",
        "soak_rss_start_mb": {r: round(s[0][1], 1) for r, s in headline.items()},
        "soak_rss_end_mb": {r: round(s[-1][1], 1) for r, s in headline.items()},
        "soak_rss_growth_mb_per_hour": {r: _round(g) for r, g in growth.items()},
        "soak_rss_growth_max_mb_per_hour": _round(max(steady.values())) if steady else None,
        "soak_rss_growth_max_process": max(steady, key=lambda r: steady[r]) if steady else None,
        "soak_anon_growth_mb_per_hour": {
            r: _round(slope_mb_per_hour(s, since)) for r, s in anon.items()
        },
        "soak_load_average": {
            "min": round(min(loads), 2),
            "median": round(float(np.median(loads)), 2),
            "max": round(max(loads), 2),
        }
        if loads
        else None,  # fmt: skip
        "soak_vmrss_growth_mb_per_hour": {
            r: _round(slope_mb_per_hour(s, since)) for r, s in rss.items()
        },
        "soak_rss_samples": {
            r: [(round(t, 0), round(v, 1)) for t, v in s] for r, s in headline.items()
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

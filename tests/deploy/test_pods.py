"""The dev overlay running for real: the light image built on a debootstrapped Debian base,
the rendered overlay played with ``podman kube play`` (object store, data, two serving
replicas, labeling and the annotator UI), then a smoke test from the host over the pods'
addresses: health of every service, a feature write and read (through the data service and
its native reader), a model registered, deployed and predicted through both serving replicas,
a labeling round trip; then ``podman kube down``. The trainer and graph pods (the ml image,
torch: a multi-GB build) are left out of this run."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from minio import Minio
from minio.error import S3Error
from prometheus_client.parser import text_string_to_metric_families

from atlas.data.v1 import data_service_pb2 as dpb
from atlas.labeling.v1 import labeling_service_pb2 as lpb
from atlas.serving.v1 import serving_service_pb2 as spb
from atlas_core.clients.data import DataClient
from atlas_core.clients.labeling import LabelingClient
from atlas_core.clients.serving import ServingClient, variant
from atlas_core.errors import AtlasError
from atlas_core.rpc import ClientSettings

from ..grpc.serving.conftest import breast_cancer, write_model
from .podman import (
    GRPC,
    LIGHT_IMAGE,
    NETWORK,
    Suite,
    containers_conf,
    ensure_base_image,
    ensure_light_image,
    http_ok,
    played_dev_overlay,
    require_podman,
    run,
    serving,
)

# The first test's setup builds the Debian base and the light image on a fresh machine (about
# 15 minutes on 2 busy cores); later runs reuse them.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    require_podman()
    work = tmp_path_factory.mktemp("podman")
    env = containers_conf(work / "containers.conf")
    ensure_base_image(env, work)
    ensure_light_image(env)
    with played_dev_overlay(env, work) as played:
        yield played


def test_light_image_is_lean_non_root_and_has_the_native_reader(suite: Suite) -> None:
    info = json.loads(run(suite.env, "podman", "image", "inspect", LIGHT_IMAGE))[0]
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"] == ["/usr/bin/tini", "--"]
    probe = (
        "import importlib.util as u, shutil, sys; "
        "sys.exit(0 if u.find_spec('torch') is None and u.find_spec('dgl') is None "
        "and shutil.which('atlas-online-reader') else 1)"
    )
    run(suite.env, "podman", "run", "--rm", LIGHT_IMAGE, "python", "-c", probe)


def test_every_service_is_healthy_and_the_probe_script_agrees(suite: Suite) -> None:
    for pod, (service, port) in GRPC.items():
        assert serving(f"{suite.ips[pod]}:{port}", service), pod
        # the image's HEALTHCHECK command, run inside the container
        run(
            suite.env,
            "podman",
            "exec",
            f"{pod}-{pod.split('-')[1]}",
            "python",
            "/usr/local/bin/atlas-healthcheck",
        )
    assert http_ok(f"http://{suite.ips['atlas-labeling-web']}:7180/healthz")
    # the data pod serves online reads from its native reader as well
    assert serving(f"{suite.ips['atlas-data']}:7111", "atlas.data.v1.OnlineFeatureService")


def test_feature_write_and_read(suite: Suite) -> None:
    spec = dpb.FeatureGroupSpec(
        name="deploy_smoke",
        entity_key="id",
        event_time_column="ts",
        entity_key_type=dpb.ENTITY_KEY_TYPE_INT64,
        features=[dpb.FeatureSpec(name="a", dtype=dpb.FEATURE_TYPE_FLOAT32)],
    )
    settings = ClientSettings(target=f"{suite.ips['atlas-data']}:7101", token=suite.token())
    with DataClient(settings, timeout=30) as client:
        client.create_feature_group(spec)
        records = [
            dpb.FeatureRecord(
                entity_key=dpb.EntityKey(int64_key=k),
                event_time=Timestamp(seconds=int(time.time())),
                float32_values=np.array([k * 1.5], "<f4").tobytes(),
            )
            for k in range(10)
        ]
        assert client.put_records("deploy_smoke", records).records_written == 10
        got = client.get_features("deploy_smoke", [3, 7, 99])
        assert got.found.tolist() == [True, True, False]
        assert got.column("a")[:2].tolist() == [4.5, 10.5]
    reader = settings.model_copy(update={"read_target": f"{suite.ips['atlas-data']}:7111"})
    with DataClient(reader, timeout=30) as client:
        assert client.get_features("deploy_smoke", [7]).column("a").tolist() == [10.5]


def test_register_deploy_predict_through_both_serving_replicas(suite: Suite) -> None:
    replicas = [f"{suite.ips[p]}:7103" for p in ("atlas-serving", "atlas-serving-1")]
    ref = write_model(suite.s3(), "models/deploy-smoke/v1.tar")
    first = ServingClient(ClientSettings(target=replicas[0], token=suite.token()), timeout=30)
    try:
        first.register("deploy-smoke", ref.uri)
        first.create_endpoint(
            spb.EndpointSpec(name="smoke", variants=[variant("blue", "deploy-smoke", version=1)])
        )
    finally:
        first.close()
    rows = breast_cancer()[0].iloc[:4].to_dict("records")
    metrics = [f"{suite.ips[p]}:9090" for p in ("atlas-serving", "atlas-serving-1")]
    for target in replicas:
        client = ServingClient(ClientSettings(target=target, token=suite.token()), timeout=30)
        try:
            deadline = time.monotonic() + 60
            while True:  # a replica converges from the shared metadata DB (poll_seconds)
                try:
                    reply = client.predict("smoke", rows[0])
                    break
                except AtlasError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert (reply.variant, reply.model.version) == ("blue", 1)
            for row in rows:
                client.predict("smoke", row)
        finally:
            client.close()
    # each replica answered its five direct calls (its own Prometheus counter) ...
    assert [_served(m) for m in metrics] == [5.0, 5.0]
    # ... and the client given both addresses balances over them (round robin over the
    # connections that are ready: a busy host may need a few calls before both are)
    both = ServingClient(ClientSettings(target=",".join(replicas), token=suite.token()))
    try:
        for i in range(200):
            both.predict("smoke", rows[i % len(rows)])
            if i >= 9 and min(_served(m) for m in metrics) > 5:
                break
    finally:
        both.close()
    served = [_served(m) for m in metrics]
    assert min(served) > 5 and sum(served) == 10 + i + 1, served


def _served(address: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "atlas_serving_requests_total"
        and sample.labels.get("endpoint") == "smoke"
        and sample.labels.get("code") == "OK"
    )


def test_labeling_round_trip(suite: Suite) -> None:
    settings = ClientSettings(target=f"{suite.ips['atlas-labeling']}:7104", token=suite.token())
    with LabelingClient(settings) as client:
        project = client.create_project(
            lpb.ProjectSpec(
                name="deploy-smoke",
                task_type=lpb.TASK_TYPE_TEXT_CLASSIFICATION,
                labels=[lpb.LabelDefinition(name="pos"), lpb.LabelDefinition(name="neg")],
            )
        )
        (item_id,) = client.add_texts(project.project_id, ["the pods came up"])
        (assignment,) = client.request_assignments(project.project_id, 1, annotator="ann")
        done = client.submit_annotation(
            assignment.assignment_id,
            lpb.AnnotationValue(classes=lpb.ClassLabels(labels=["pos"])),
            annotator="ann",
        )
        assert done.item_status == lpb.ITEM_STATUS_DONE
        item = client.get_item(project.project_id, item_id)
        assert item.status == lpb.ITEM_STATUS_DONE


def _migrate(suite: Suite, *extra_env: str) -> subprocess.CompletedProcess[str]:
    env: list[str] = []
    for svc in ("data", "serving", "labeling"):
        p = f"ATLAS_{svc.upper()}_"
        env += ["-e", f"{p}DATABASE__URL=sqlite:////tmp/{svc}.db", "-e", f"{p}DATA_DIR=/tmp/{svc}"]
        env += ["-e", f"{p}S3__ENDPOINT=atlas-objectstore:8333"]
        env += ["-e", f"{p}S3__ACCESS_KEY={suite.secrets['atlas-s3']['access-key']}"]
        env += ["-e", f"{p}S3__SECRET_KEY={suite.secrets['atlas-s3']['secret-key']}"]
    for var in extra_env:
        env += ["-e", var]
    return subprocess.run(
        ["podman", "run", "--rm", "--read-only", "--network", NETWORK, *env, LIGHT_IMAGE]
        + ["python", "/usr/local/bin/atlas-migrate", "data", "serving", "labeling"],
        env=suite.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_migration_job_and_a_misspelled_setting(suite: Suite) -> None:
    """The prod migration Job's command, in a container on the pods' network: each service's
    schema is brought up to date; a misspelled setting fails with one line naming it."""
    done = _migrate(suite)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("schema up to date") == 3, done.stdout
    wrong = _migrate(suite, "ATLAS_SERVING_DATABASE__URI=sqlite:////tmp/x.db")
    assert wrong.returncode != 0
    lines = [line for line in wrong.stderr.splitlines() if line.startswith("atlas-migrate")]
    assert lines == [
        "atlas-migrate: serving: invalid configuration: unknown key 'database.uri' "
        "(env ATLAS_SERVING_DATABASE__URI)"
    ], wrong.stderr


def test_object_store_enforces_its_keys(suite: Suite) -> None:
    s3 = suite.s3()
    right = Minio(
        s3.endpoint,
        s3.access_key.get_secret_value(),
        s3.secret_key.get_secret_value(),
        secure=False,
    )
    assert right.bucket_exists("atlas")  # the services created it
    wrong = Minio(s3.endpoint, s3.access_key.get_secret_value(), "not-the-key", secure=False)
    with pytest.raises(S3Error):
        list(wrong.list_objects("atlas"))

"""Running the images with podman on this host: podman, buildah, runc and debootstrap from
Debian; runc (crun fails on hybrid cgroups here), explicit ulimits within the host's hard
limits, all in a containers.conf the processes find through CONTAINERS_CONF. Images are built
on a Debian base made with debootstrap (no registry is reachable) and reused while their
inputs are unchanged.

``podman kube play`` (4.3, Debian bookworm) has no Services and does not read Secrets from the
YAML, so :func:`for_kube_play` adapts the rendered dev overlay the way a cluster would have
served it: each Deployment replica becomes a Pod named for its Service (the first replica takes
the Service's name, which the network's DNS resolves), Secret values are filled in and Secret
volumes become host directories holding their keys. Container ports are dropped: kube play
would publish each on the host, and the tests reach the pods on their network addresses."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from atlas_core.config import S3Settings

from .manifests import ROOT, render

TOOLS = ("podman", "buildah", "runc", "debootstrap")
BASE_IMAGE = "localhost/debian-base:bookworm"
LIGHT_IMAGE = "localhost/atlas-light:dev"
INPUTS_LABEL = "dev.atlas.inputs"
# What the light image is built from (the .dockerignore context).
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "src",
    "services",
    "protos",
    "native",
    "deploy/container",
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_podman() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make test installs them as root)")
    if os.geteuid() != 0:
        pytest.skip("podman kube play and debootstrap run as root here")


def containers_conf(path: Path) -> dict[str, str]:
    """Write a containers.conf and return the environment that points podman at it."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if hard == resource.RLIM_INFINITY else hard
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    return dict(os.environ, CONTAINERS_CONF=str(path))


def run(env: dict[str, str], *argv: str, timeout: float = 600, check: bool = True) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 or one-line sources)."""
    for source in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        text = source.read_text()
        for block in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", block, re.M):
                uri = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if uri and "security" not in uri.group(1):
                    return uri.group(1)
    lists = Path("/etc/apt/sources.list")
    if lists.exists():
        for line in lists.read_text().splitlines():
            m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m:
                return m.group(1)
    return "http://deb.debian.org/debian"


def ensure_base_image(env: dict[str, str], work: Path) -> None:
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env).returncode == 0:
        return
    rootfs = work / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    run(
        env,
        "debootstrap",
        "--variant=minbase",
        "bookworm",
        str(rootfs),
        debian_mirror(),
        timeout=1200,
    )
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (rootfs / junk).glob("*"):
            if f.is_file():
                f.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "import", "--change", f"ENV PATH={PATH}", "-", BASE_IMAGE],
        stdin=tar.stdout,
        env=env,
        check=True,
        capture_output=True,
    )
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)


def inputs_digest() -> str:
    """Hash of the contents of the tracked files the light image is built from."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *BUILD_INPUTS],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    digest = hashlib.sha256()
    for name in sorted(n for n in listed if n):
        path = ROOT / name.decode()
        digest.update(name + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:16]


def ensure_light_image(env: dict[str, str]) -> None:
    """Build the light image on the Debian base unless one from the same inputs exists."""
    digest = inputs_digest()
    have = run(
        env,
        "podman",
        "image",
        "inspect",
        "--format",
        f'{{{{index .Labels "{INPUTS_LABEL}"}}}}',
        LIGHT_IMAGE,
        check=False,
    ).strip()
    if have == digest:
        return
    # The build reaches the package index through this host's TLS-intercepting proxy: its CA
    # certificates go into the (git-ignored) extra-ca directory for the build only.
    extra = ROOT / "deploy" / "container" / "extra-ca"
    copied = []
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        target = extra / f"host-{cert.name}"
        shutil.copy(cert, target)
        copied.append(target)
    try:
        run(
            env,
            "podman",
            "build",
            "--runtime",
            "runc",
            # docker format keeps HEALTHCHECK (OCI images have no field for it)
            "--format",
            "docker",
            "-f",
            "deploy/container/Containerfile",
            "--target",
            "light",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "--label",
            f"{INPUTS_LABEL}={digest}",
            "-t",
            LIGHT_IMAGE,
            str(ROOT),
            timeout=2400,
        )
    finally:
        for target in copied:
            target.unlink(missing_ok=True)


def for_kube_play(docs: list[dict[str, Any]], secrets_dir: Path) -> list[dict[str, Any]]:
    """The rendered dev overlay as podman 4.3's kube play can run it (module docstring)."""
    secrets = {
        d["metadata"]["name"]: {
            k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()
        }
        for d in docs
        if d["kind"] == "Secret"
    }
    for name, data in secrets.items():
        for key, value in data.items():
            path = secrets_dir / name / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value)
            path.chmod(0o644)  # read by the image's non-root user
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] in ("ConfigMap", "PersistentVolumeClaim"):
            out.append(doc)
        elif doc["kind"] == "Deployment":
            name = doc["metadata"]["name"]
            for i in range(doc["spec"].get("replicas", 1)):
                spec = copy.deepcopy(doc["spec"]["template"]["spec"])
                for container in spec["containers"]:
                    # podman 4.3 publishes every containerPort on the host (other suites use
                    # those ports here); the pods are reached on their network addresses.
                    container.pop("ports", None)
                    for var in container.get("env", []):
                        ref = var.get("valueFrom", {}).get("secretKeyRef")
                        if ref:
                            var.pop("valueFrom")
                            var["value"] = secrets[ref["name"]][ref["key"]]
                for volume in spec.get("volumes", []):
                    if "secret" in volume:
                        src = volume.pop("secret")
                        volume["hostPath"] = {
                            "path": str(secrets_dir / src["secretName"]),
                            "type": "DirectoryOrCreate",
                        }
                out.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": name if i == 0 else f"{name}-{i}",
                            "labels": doc["spec"]["template"]["metadata"]["labels"],
                        },
                        "spec": spec,
                    }
                )
    return out


NETWORK = "atlas-deploy-test"
# The light image's pods; trainer and graph need the ml image.
PLAYED = {
    "atlas-objectstore",
    "atlas-data",
    "atlas-serving",
    "atlas-labeling",
    "atlas-labeling-web",
}
# pod -> (gRPC service reported SERVING, port)
GRPC = {
    "atlas-data": ("atlas.data.v1.DataService", 7101),
    "atlas-serving": ("atlas.serving.v1.ServingService", 7103),
    "atlas-serving-1": ("atlas.serving.v1.ServingService", 7103),
    "atlas-labeling": ("atlas.labeling.v1.LabelingService", 7104),
}
# The ml image's pods (played with with_ml=True, once localhost/atlas-ml:dev is built).
ML_GRPC = {
    "atlas-trainer": ("atlas.trainer.v1.TrainerService", 7102),
    "atlas-graph": ("atlas.graph.v1.GraphService", 7105),
}


@dataclass
class Suite:
    """The played dev overlay, as the host sees it."""

    env: dict[str, str]
    ips: dict[str, str]  # pod name -> address on the test network
    secrets: dict[str, dict[str, str]]
    ready_s: float  # from kube play to every service SERVING

    def token(self) -> SecretStr:
        return SecretStr(self.secrets["atlas-tokens"]["admin-token"])

    def s3(self) -> S3Settings:
        return S3Settings(
            endpoint=f"{self.ips['atlas-objectstore']}:8333",
            access_key=SecretStr(self.secrets["atlas-s3"]["access-key"]),
            secret_key=SecretStr(self.secrets["atlas-s3"]["secret-key"]),
        )


def serving(address: str, service: str) -> bool:
    """Whether ``service`` at ``address`` answers the gRPC health check SERVING now."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _pod_ip(env: dict[str, str], pod: str) -> str:
    infra = json.loads(run(env, "podman", "pod", "inspect", pod))
    infra = infra[0] if isinstance(infra, list) else infra
    info = json.loads(run(env, "podman", "inspect", infra["InfraContainerID"]))[0]
    return info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


def _logs(env: dict[str, str], pods: list[str]) -> str:
    out = []
    for pod in pods:
        names = run(env, "podman", "ps", "-a", "--filter", f"pod={pod}", "--format", "{{.Names}}")
        for name in names.split():
            if not name.endswith("-infra"):
                tail = run(env, "podman", "logs", "--tail", "20", name, check=False)
                out.append(f"--- {name}\n{tail}")
    return "\n".join(out)


@contextmanager
def played_dev_overlay(
    env: dict[str, str], work: Path, *, with_ml: bool = False, timeout: float = 240
) -> Iterator[Suite]:
    """``podman kube play`` the rendered dev overlay's light pods (and trainer and graph with
    ``with_ml``), wait until every service is SERVING (the UI answers /healthz), yield; then
    ``podman kube down`` and drop its volumes."""
    grpc_pods = {**GRPC, **(ML_GRPC if with_ml else {})}
    apps = PLAYED | ({"atlas-trainer", "atlas-graph"} if with_ml else set())
    docs = render("dev")
    secrets = {
        d["metadata"]["name"]: {
            k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()
        }
        for d in docs
        if d["kind"] == "Secret"
    }
    played = [
        d
        for d in for_kube_play(docs, work / "secrets")
        if d["kind"] != "Pod" or d["metadata"]["labels"]["app.kubernetes.io/name"] in apps
    ]
    kube = work / "dev.yaml"
    kube.write_text(yaml.safe_dump_all(played))
    pods = [d["metadata"]["name"] for d in played if d["kind"] == "Pod"]
    volumes = [d["metadata"]["name"] for d in played if d["kind"] == "PersistentVolumeClaim"]

    def down() -> None:
        run(env, "podman", "kube", "down", str(kube), check=False, timeout=300)
        for volume in volumes:
            run(env, "podman", "volume", "rm", "-f", volume, check=False)

    down()  # what an interrupted run left behind
    if subprocess.run(["podman", "network", "exists", NETWORK], env=env).returncode != 0:
        run(env, "podman", "network", "create", NETWORK)
    started = time.monotonic()
    try:
        run(env, "podman", "kube", "play", "--network", NETWORK, str(kube), timeout=300)
        ips = {pod: _pod_ip(env, pod) for pod in pods}
        deadline = time.monotonic() + timeout
        waiting = set(grpc_pods) | {"atlas-labeling-web"}
        while waiting and time.monotonic() < deadline:
            for pod in list(waiting):
                if pod == "atlas-labeling-web":
                    up = http_ok(f"http://{ips[pod]}:7180/healthz")
                else:
                    up = serving(f"{ips[pod]}:{grpc_pods[pod][1]}", grpc_pods[pod][0])
                if up:
                    waiting.discard(pod)
            time.sleep(0.2)
        assert not waiting, f"not SERVING: {sorted(waiting)}\n{_logs(env, pods)}"
        yield Suite(env, ips, secrets, time.monotonic() - started)
    finally:
        down()
        run(env, "podman", "network", "rm", "-f", NETWORK, check=False)

"""The manifests' and the compose file's environment is the services' typed settings: every
variable is a real setting of the process that reads it (loaded exactly as the process would),
every setting a deployment must set is set, and it agrees with the ports, probes, volumes,
Services and Secrets around it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from atlas_core.bundle_signing import BundleSigner
from atlas_core.errors import ConfigError
from atlas_core.launcher._services import KNOWN_SERVICES

from .manifests import (
    DEPLOY,
    MODULES,
    OVERLAYS,
    POD_NAME,
    ROOT,
    Container,
    compose,
    compose_containers,
    compose_variables,
    k8s_containers,
    render,
    settings_of,
    unowned,
)

NEEDS = {f"ATLAS_{s.name.upper()}": s.needs for s in KNOWN_SERVICES}
# What `make compose-up` generates into deploy/compose/.env.
GENERATED = {
    "POSTGRES_PASSWORD": "pg-pass",
    "REDIS_PASSWORD": "redis-pass",
    "ATLAS_S3_ACCESS_KEY": "atlas-0123",
    "ATLAS_S3_SECRET_KEY": "s3-secret",
    "ATLAS_ADMIN_TOKEN": "admin-token",
    "ATLAS_WEB_SESSION_SECRET": "session",
}
# Secrets prod expects to exist (created outside the repository; docs/deploy.md lists them).
PROD_SECRETS = {"atlas-database", "atlas-redis", "atlas-s3", "atlas-tokens", "atlas-web"}
# The object store pod (dev) is SeaweedFS, configured by its own environment.
FOREIGN_ENV = {"Deployment/atlas-objectstore": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def _all_containers(overlay: tuple[str, list[dict]]) -> list[Container]:
    return list(k8s_containers(overlay[1]))


def test_every_env_var_is_a_setting_of_the_process_reading_it(overlay) -> None:
    boxes = _all_containers(overlay)
    assert {b.module for b in boxes} >= set(MODULES), "every service is deployed"
    for box in boxes:
        assert unowned(box) == sorted(FOREIGN_ENV.get(box.workload, ())), box.workload
        loaded = settings_of(box)  # raises ConfigError naming an unknown key or bad value
        if box.module:
            assert set(loaded) == {MODULES[box.module]}, f"{box.workload} sets another's env"


def test_compose_env_vars_are_settings() -> None:
    boxes = [b for b in compose_containers(GENERATED) if b.module]
    assert {b.module for b in boxes} == set(MODULES)
    for box in boxes:
        assert unowned(box) == [], box.workload
        assert set(settings_of(box)) == {MODULES[box.module]}, box.workload


def _check_service(box: Container, services: dict[str, int], via_compose: bool) -> None:
    prefix = MODULES[box.module]
    settings = settings_of(box)[prefix]
    env = box.env
    name = box.workload
    if prefix == "ATLAS_LABELING_WEB":
        assert settings.host == "0.0.0.0", name
        assert settings.port in box.ports.values(), f"{name}: PORT is not a container port"
        assert settings.labeling.target.split(":")[0] in services, name
        required = ["S3__ENDPOINT", "S3__ACCESS_KEY", "S3__SECRET_KEY", "SESSION_SECRET"]
        for key in required:
            assert f"{prefix}_{key}" in env, f"{name}: {prefix}_{key} is not set"
        return
    server = settings.server
    assert server.host == "0.0.0.0", f"{name}: the server must listen beyond loopback"
    assert server.port in box.ports.values(), f"{name}: SERVER__PORT is not a container port"
    assert server.metrics_port, f"{name}: metrics on a fixed port"
    if not via_compose:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert box.spec[probe]["grpc"]["port"] == server.port, f"{name}: {probe}"
    for key in ("S3__ENDPOINT", "S3__ACCESS_KEY", "S3__SECRET_KEY", "DATABASE__URL", "DATA_DIR"):
        assert f"{prefix}_{key}" in env, f"{name}: {prefix}_{key} is not set"
    # The root filesystem is read-only: the data directory must be a volume.
    assert any(str(settings.data_dir).startswith(m) for m in box.mounts), f"{name}: DATA_DIR"
    auth = server.auth
    assert auth.enabled and (auth.tokens or auth.tokens_file), f"{name}: no caller tokens"
    if auth.tokens_file is not None:
        assert any(str(auth.tokens_file).startswith(m) for m in box.mounts), name
    for dep in NEEDS[prefix]:
        peer = getattr(settings, dep)
        assert peer is not None and peer.target, f"{name}: {prefix}_{dep.upper()}__TARGET"
        assert peer.token is not None, f"{name}: {prefix}_{dep.upper()}__TOKEN"
        for address in peer.target.split(","):
            host, port = address.rsplit(":", 1)
            assert (
                services.get(host) == int(port)
                or via_compose
                and re.match(r"\d+\.\d+\.\d+\.\d+$", host)
            ), f"{name}: {dep} target {address} is no service port"
    if box.replicas > 1:
        # Replicas share the metadata DB: each needs its own replica and job-runner id.
        if hasattr(settings, "runtime"):
            assert settings.runtime.replica_id == POD_NAME, name
        assert settings.jobs.runner_id == POD_NAME, name
    elif hasattr(settings, "jobs"):
        assert settings.jobs.runner_id, f"{name}: a stable job runner id"


def test_required_settings_are_set_and_agree_with_the_manifest(overlay) -> None:
    docs = overlay[1]
    services = {
        d["metadata"]["name"]: p["port"]
        for d in docs
        if d["kind"] == "Service"
        for p in d["spec"]["ports"]
        if p["name"] in ("grpc", "http", "s3")
    }
    readers = {
        d["metadata"]["name"]: p["port"]
        for d in docs
        if d["kind"] == "Service"
        for p in d["spec"]["ports"]
        if p["name"] == "reader"
    }
    for box in _all_containers(overlay):
        if box.module:
            _check_service(box, services, via_compose=False)
        read_target = box.env.get("ATLAS_SERVING_DATA__READ_TARGET")
        if read_target:
            host, port = read_target.split(":")
            assert readers.get(host) == int(port)
            assert box.env.get("ATLAS_DATA_ONLINE__BACKEND", "lmdb") == "lmdb"
    data = next(b for b in _all_containers(overlay) if b.module == "atlas_data")
    if data.replicas > 1:
        assert data.env["ATLAS_DATA_ONLINE__BACKEND"] == "redis", "replicas share one store"
        assert data.env["ATLAS_DATA_JOBS__RUNNER_ID"] == POD_NAME


def test_compose_required_settings_and_credentials() -> None:
    spec = compose()["services"]
    boxes = [b for b in compose_containers(GENERATED) if b.module]
    # compose service name -> the gRPC port its process listens on
    services = {
        b.workload.removeprefix("compose/"): settings_of(b)[MODULES[b.module]].server.port
        for b in boxes
        if b.module != "atlas_labeling.web"
    }
    for box in boxes:
        _check_service(box, services, via_compose=True)
    serving = [n for n in spec if n.startswith("serving-")]
    assert len(serving) == 2, "two serving replicas"
    ids = {
        settings_of(b)["ATLAS_SERVING"].runtime.replica_id
        for b in boxes
        if b.module == "atlas_serving"
    }
    assert len(ids) == 2, "each replica has its own id"
    # labeling balances over both replicas' fixed addresses
    addresses = {spec[n]["networks"]["default"]["ipv4_address"] + ":7103" for n in serving}
    labeling = spec["labeling"]["environment"]["ATLAS_LABELING_SERVING__TARGET"]
    assert set(labeling.split(",")) == addresses
    # Every credential is generated by `make compose-up`, and nothing else is interpolated.
    assert compose_variables() == set(GENERATED)
    makefile = (ROOT / "Makefile").read_text()
    for var in GENERATED:
        assert f'("{var}",' in makefile, f"make compose-up does not generate {var}"
    assert ".env" in (DEPLOY / "compose" / ".gitignore").read_text().split()
    for store in ("postgres", "redis", "minio"):
        assert store in spec
    volumes = set(compose()["volumes"])
    for name, svc in spec.items():
        for mount in svc.get("volumes", []):
            source = str(mount).split(":")[0]
            assert source.startswith("./") or source in volumes, f"{name}: {source} unnamed"


def test_secrets_exist_in_dev_and_are_documented_for_prod() -> None:
    docs = render("dev")
    secrets = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "Secret"}
    for box in k8s_containers(docs):
        for source in box.sources.values():
            if source.startswith("secret:"):
                name, key = source[len("secret:") :].split("/")
                assert key in secrets.get(name, {}), f"{box.workload}: {name}/{key} missing"
    used = {
        source[len("secret:") :].split("/")[0]
        for box in k8s_containers(render("prod"))
        for source in box.sources.values()
        if source.startswith("secret:")
    }
    assert used == PROD_SECRETS
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name in PROD_SECRETS | {"atlas-bundle-signing"}:
        assert f"`{name}`" in guide, f"docs/deploy.md does not describe the Secret {name}"
    prod = render("prod")
    assert not [d for d in prod if d["kind"] == "Secret"], "prod never carries credentials"


def _secret_volumes(docs: list[dict]) -> list[tuple[str, dict, int | None]]:
    """(workload, secret volume, pod fsGroup) for every Secret volume in ``docs``."""
    out = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        group = (pod.get("securityContext") or {}).get("fsGroup")
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                out.append((doc["metadata"]["name"], volume["secret"], group))
    return out


def test_the_signing_key_secret_is_mounted_as_the_services_accept_it(
    overlay, tmp_path: Path
) -> None:
    """The kubelet writes a Secret volume's files with ``defaultMode`` (0644 when unset) plus
    group read for the pod's fsGroup; the services refuse a key file other users can read,
    so prod's signing key must be mounted without the "other" bits. Written as the kubelet
    would, the key loads; with Kubernetes' default mode it is refused, naming the fix."""
    name, docs = overlay
    volumes = _secret_volumes(docs)
    assert {w for w, v, _ in volumes if v["secretName"] == "atlas-bundle-signing"} == {
        "atlas-trainer",
        "atlas-graph",
        "atlas-serving",
    }, name
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for workload, secret, fs_group in volumes:
        mode = secret.get("defaultMode", 0o644)
        if fs_group is not None:
            mode |= 0o440
        path = tmp_path / f"{workload}-signing.key"
        path.write_bytes(key)
        path.chmod(mode)
        assert BundleSigner.from_file(path).key_id, workload
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        BundleSigner.from_file(path)

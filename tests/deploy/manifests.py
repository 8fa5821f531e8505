"""Reading the deployment files the way the runtimes do: kustomize overlays rendered by
kubectl, compose files interpolated, and every container's environment mapped onto the typed
settings object of the process it runs (``atlas_core.config.load_settings``)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from atlas_core.config import load_settings
from atlas_core.launcher._services import KNOWN_SERVICES
from atlas_data.config import DataSettings
from atlas_graph.config import GraphSettings
from atlas_labeling.config import LabelingSettings
from atlas_labeling.web.config import LabelingWebSettings
from atlas_serving.config import ServingSettings
from atlas_trainer.config import TrainerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")

# Env prefix -> the settings object of the process reading it (longest prefix first).
SETTINGS: dict[str, type[BaseModel]] = {
    "ATLAS_LABELING_WEB": LabelingWebSettings,
    "ATLAS_DATA": DataSettings,
    "ATLAS_TRAINER": TrainerSettings,
    "ATLAS_SERVING": ServingSettings,
    "ATLAS_LABELING": LabelingSettings,
    "ATLAS_GRAPH": GraphSettings,
}
# The module each process runs -> its env prefix.
MODULES = {f"atlas_{s.name}": f"ATLAS_{s.name.upper()}" for s in KNOWN_SERVICES}
MODULES["atlas_labeling.web"] = "ATLAS_LABELING_WEB"
# Placeholders for values only known at run time (Secrets, the pod's own name).
SECRET_VALUE = "from-a-secret"
SECRET_TOKENS = '{"from-a-secret": ["*"]}'
POD_NAME = "atlas-pod-0"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (it renders the kustomize overlays)")
    return found


@functools.cache
def _rendered(overlay: str) -> str:
    return subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def render(overlay: str) -> list[dict[str, Any]]:
    out = _rendered(overlay)
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class Container:
    """One container of a workload (or one compose service), its environment resolved."""

    workload: str
    args: list[str]
    env: dict[str, str]
    # Where each variable came from: "configmap", "secret:<name>/<key>", "field", "literal".
    sources: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)
    replicas: int = 1
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str | None:
        if len(self.args) >= 3 and self.args[:2] == ["python", "-m"]:
            return self.args[2]
        return None


def k8s_containers(docs: list[dict[str, Any]]) -> Iterator[Container]:
    config_maps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"]:
            box = Container(
                f"{doc['kind']}/{doc['metadata']['name']}",
                list(c.get("command", [])) + list(c.get("args", [])),
                {},
                replicas=doc["spec"].get("replicas", 1),
                spec=c,
            )
            for ref in c.get("envFrom", []):
                for k, v in config_maps[ref["configMapRef"]["name"]].items():
                    box.env[k], box.sources[k] = v, "configmap"
            for var in c.get("env", []):
                name = var["name"]
                assert name not in box.env, f"{box.workload}: {name} set twice"
                if "value" in var:
                    box.env[name], box.sources[name] = var["value"], "literal"
                elif "secretKeyRef" in var.get("valueFrom", {}):
                    ref = var["valueFrom"]["secretKeyRef"]
                    # a map setting (callers' tokens) holds JSON
                    box.env[name] = SECRET_TOKENS if name.endswith("__TOKENS") else SECRET_VALUE
                    box.sources[name] = f"secret:{ref['name']}/{ref['key']}"
                else:
                    assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", var
                    box.env[name], box.sources[name] = POD_NAME, "field"
            box.ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            box.mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            yield box


_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())


def compose_variables() -> set[str]:
    return set(_INTERPOLATION.findall((DEPLOY / "compose" / "compose.yaml").read_text()))


def compose_containers(generated: dict[str, str]) -> Iterator[Container]:
    def interpolate(value: str) -> str:
        return _INTERPOLATION.sub(lambda m: generated[m.group(1)], value)

    for name, svc in compose()["services"].items():
        env = {k: interpolate(str(v)) for k, v in (svc.get("environment") or {}).items()}
        ports = {}
        for spec in svc.get("ports", []):
            ports[spec] = int(spec.rsplit(":", 1)[1])
        yield Container(
            f"compose/{name}",
            list(svc.get("command", [])),
            env,
            {k: "compose" for k in env},
            ports,
            [str(v).split(":")[1] for v in svc.get("volumes", []) if ":" in str(v)],
            spec=svc,
        )


def settings_of(box: Container) -> dict[str, BaseModel]:
    """Load every settings object whose prefix the container's environment uses, exactly as
    the process would (unknown keys and wrong types raise ConfigError naming the key)."""
    loaded = {}
    for prefix, model in SETTINGS.items():
        if any(_owner(name) == prefix for name in box.env):
            loaded[prefix] = load_settings(model, env_prefix=prefix, env=box.env)
    return loaded


def _owner(name: str) -> str | None:
    for prefix in SETTINGS:  # longest first
        if name.startswith(prefix + "_"):
            return prefix
    return None


def unowned(box: Container) -> list[str]:
    return sorted(n for n in box.env if _owner(n) is None)

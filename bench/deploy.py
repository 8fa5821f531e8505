"""Deployment benchmark: the images and the dev overlay played with podman (see
tests/deploy/podman.py for how this host runs them).

- ``image_light_mb`` / ``image_ml_mb``: image sizes (the ml image only when
  localhost/atlas-ml:dev has been built: ``podman build --target ml``; torch makes it
  multi-GB). The light image must not contain torch: checked, not assumed.
- ``pods_ready_s``: from ``podman kube play`` of the dev overlay (object store, data, two
  serving replicas, labeling, the annotator UI; trainer and graph too when the ml image is
  built) to every service SERVING; median of the runs.
- ``serving_replica_kill_failed_pct``: closed-loop Predict from 8 threads through the client's
  round_robin over both serving pods; one pod is killed (SIGKILL) after 2 s, load runs 3 s more.

- ``distributed_hpo_speedup_2w``: trials per second of two workers on one PostgreSQL study
  against one, measured by bench/distributed_hpo.py's :func:`measure` (plain processes on
  this host's PostgreSQL, not pods: two trainer pods would need the ml image and a PostgreSQL
  pod); the cores it ran on and its runs are kept beside it (``distributed_hpo``). Every run
  asserts the study: budget exact, no trial or configuration twice.

    python bench/deploy.py            # 3 plays
    python bench/deploy.py --quick    # 1 play

Needs root, podman, buildah, runc and debootstrap (``make deploy-tools-optional``). Writes
bench/results/deploy.json (and a dated copy, see _results.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import distributed_hpo  # noqa: E402
from _results import write_results  # noqa: E402

from atlas.serving.v1 import serving_service_pb2 as spb  # noqa: E402
from atlas_core.clients.serving import ServingClient, variant  # noqa: E402
from atlas_core.errors import AtlasError  # noqa: E402
from atlas_core.rpc import ClientSettings  # noqa: E402
from tests.deploy.podman import (  # noqa: E402
    LIGHT_IMAGE,
    Suite,
    containers_conf,
    ensure_base_image,
    ensure_light_image,
    played_dev_overlay,
    run,
)
from tests.grpc.serving.conftest import breast_cancer, write_model  # noqa: E402

ML_IMAGE = "localhost/atlas-ml:dev"


def _succeeds(env: dict[str, str], *argv: str) -> bool:
    return subprocess.run(argv, env=env, capture_output=True).returncode == 0


def _size_mb(env: dict[str, str], image: str) -> float | None:
    if not _succeeds(env, "podman", "image", "exists", image):
        return None
    out = run(env, "podman", "image", "inspect", "--format", "{{.Size}}", image)
    return round(int(out) / 1e6, 1)


def _replica_kill(suite: Suite) -> dict[str, float]:
    replicas = [f"{suite.ips[p]}:7103" for p in ("atlas-serving", "atlas-serving-1")]
    ref = write_model(suite.s3(), "models/bench-deploy/v1.tar")
    client = ServingClient(
        ClientSettings(target=",".join(replicas), token=suite.token()), timeout=10
    )
    try:
        client.register("bench-deploy", ref.uri)
        client.create_endpoint(
            spb.EndpointSpec(name="bench", variants=[variant("blue", "bench-deploy", version=1)])
        )
        rows = breast_cancer()[0].iloc[:32].to_dict("records")
        deadline = time.monotonic() + 30
        warm = 0
        while warm < 8:  # both replicas converged and loaded the model
            try:
                client.predict("bench", rows[warm])
                warm += 1
            except AtlasError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        counts = {"ok": 0, "failed": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def load(k: int) -> None:
            i = k
            while not stop.is_set():
                try:
                    client.predict("bench", rows[i % len(rows)], timeout=5)
                    key = "ok"
                except AtlasError:
                    key = "failed"
                with lock:
                    counts[key] += 1
                i += 1

        threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        run(suite.env, "podman", "kill", "--signal", "KILL", "atlas-serving-1-serving")
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join()
    finally:
        client.close()
    total = counts["ok"] + counts["failed"]
    return {
        "serving_replica_kill_failed_pct": round(100 * counts["failed"] / total, 3),
        "serving_replica_kill_requests": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ATLAS_TEST_POSTGRES_URL", distributed_hpo.DEFAULT_URL),
        help="PostgreSQL for the distributed HPO study (a schema per run, dropped after)",
    )
    args = parser.parse_args()
    plays = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="atlas-bench-deploy-") as tmp:
        work = Path(tmp)
        env = containers_conf(work / "containers.conf")
        ensure_base_image(env, work)
        ensure_light_image(env)
        torch_free = _succeeds(
            env,
            "podman",
            "run",
            "--rm",
            LIGHT_IMAGE,
            "python",
            "-c",
            "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)",
        )
        # trainer and graph pods join when the ml image is built
        with_ml = _succeeds(env, "podman", "image", "exists", ML_IMAGE)
        ready = []
        kill: dict[str, float] = {}
        pods: list[str] = []
        for i in range(plays):
            with played_dev_overlay(env, work, with_ml=with_ml) as suite:
                ready.append(round(suite.ready_s, 2))
                pods = sorted(suite.ips)
                if i == plays - 1:
                    kill = _replica_kill(suite)
        result = {
            "image_light_mb": _size_mb(env, LIGHT_IMAGE),
            "image_ml_mb": _size_mb(env, ML_IMAGE),
            "light_image_has_torch": not torch_free,
            "pods_ready_s": statistics.median(ready),
            "pods_ready_s_runs": ready,
            "pods_played": pods,
            **kill,
        }
    hpo = distributed_hpo.measure(args.postgres, 10 if args.quick else 20, 1 if args.quick else 2)
    result["distributed_hpo_speedup_2w"] = hpo.pop("distributed_hpo_speedup_2w")
    result["distributed_hpo"] = hpo
    print(json.dumps(result, indent=2))
    print(f"-> {write_results('deploy', result, quick=args.quick)}")


if __name__ == "__main__":
    main()

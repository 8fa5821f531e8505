"""Lineage: a full upstream + downstream walk from one served prediction, over the whole suite.

    python bench/lineage.py            # 300 served predictions, 200 timed walks
    python bench/lineage.py --quick    # 50 predictions, 40 walks

`atlas up` starts the suite (SeaweedFS and every service as its own process, SQLite) in a temp
directory; the chain is then built through the SDK as a user would: a labeling project whose
items are labeled by a rule and exported as a dataset -> a feature group -> a point-in-time
match of the labels with the features -> an AutoML training job (small budget) -> the bundle
registered in serving -> an endpoint recording its predictions -> N predictions. Each timed
query is `LineageClient.walk(prediction id)`: the prediction's node, every ancestor up to the
labeling project and the feature group version (about 15 nodes over 4 services) and its
descendants, as `atlas lineage <id>` runs it. A walk from the feature group version
downstream (through the model version with its N predictions, listed 20 at most) is timed too.

Writes bench/results/lineage.json (and a dated copy, see _results.py) with keys
lineage_query_ms (p99 of the walk from a prediction; target <= 100 ms), lineage_query_p50_ms,
lineage_nodes, lineage_down_from_features_p99_ms and the detail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("data", "trainer", "serving", "labeling", "graph")
ROWS = 200


def _atlas(data_dir: Path, *args: str, timeout: float = 300) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "atlas_core.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=_pythonpath()),
    )
    if out.returncode:
        raise RuntimeError(f"atlas {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def _pythonpath() -> str:
    paths = [ROOT / "src", *(ROOT / "services" / s for s in SERVICES), ROOT]
    return os.pathsep.join(map(str, paths))


def _clients(data_dir: Path) -> dict[str, Any]:
    from pydantic import SecretStr

    from atlas_core.rpc import ClientSettings

    state = json.loads((data_dir / "run" / "state.json").read_text())
    token = json.loads((data_dir / "secrets" / "credentials.json").read_text())["admin_token"]
    return {
        p["name"]: ClientSettings(target=p["address"], token=SecretStr(token))
        for p in state["processes"]
        if p["name"] in SERVICES
    }


def build_chain(settings: dict[str, Any], predictions: int) -> dict[str, str]:
    """The chain, built through the SDK; returns the ids of its steps."""
    from google.protobuf import timestamp_pb2

    from atlas.common.v1 import common_pb2
    from atlas.data.v1 import data_service_pb2 as dpb
    from atlas.labeling.v1 import labeling_service_pb2 as lpb
    from atlas.serving.v1 import serving_service_pb2 as spb
    from atlas_core.clients import DataClient, LabelingClient, TrainerClient, automl_spec
    from atlas_core.clients.serving import ServingClient, variant

    rng = np.random.default_rng(5)
    f = rng.normal(size=(ROWS, 2)).astype("<f4")
    start = time.time() - 3600
    data = DataClient(settings["data"])
    labeling = LabelingClient(settings["labeling"])
    trainer = TrainerClient(settings["trainer"], timeout=600)
    serving = ServingClient(settings["serving"])
    try:
        data.create_feature_group(
            dpb.FeatureGroupSpec(
                name="customers",
                entity_key="customer",
                entity_key_type=dpb.ENTITY_KEY_TYPE_STRING,
                event_time_column="ts",
                features=[
                    dpb.FeatureSpec(name="f1", dtype=dpb.FEATURE_TYPE_FLOAT32),
                    dpb.FeatureSpec(name="f2", dtype=dpb.FEATURE_TYPE_FLOAT32),
                ],
            )
        )

        def ts(seconds: float) -> timestamp_pb2.Timestamp:
            t = timestamp_pb2.Timestamp()
            t.FromMicroseconds(int(seconds * 1e6))
            return t

        data.put_records(
            "customers",
            (
                dpb.FeatureRecord(
                    entity_key=dpb.EntityKey(string_key=str(k)),
                    event_time=ts(start),
                    float32_values=f[k].tobytes(),
                )
                for k in range(ROWS)
            ),
        )
        project = labeling.create_project(
            lpb.ProjectSpec(
                name="churn-labels",
                task_type=lpb.TASK_TYPE_TEXT_CLASSIFICATION,
                labels=[lpb.LabelDefinition(name="pos"), lpb.LabelDefinition(name="neg")],
            )
        )
        pid = project.project_id
        labeling.add_items(
            pid,
            [
                lpb.NewItem(
                    content=lpb.ItemContent(text=f"customer {k}"),
                    entity_id=str(k),
                    label_time=ts(start + 60),
                )
                for k in range(ROWS)
            ],
        )
        while leased := labeling.request_assignments(pid, 100, annotator="ann"):
            for a in leased:
                k = int(a.item.entity_id)
                label = "pos" if f[k, 0] + f[k, 1] > 0 else "neg"
                labeling.submit_annotation(
                    a.assignment_id,
                    lpb.AnnotationValue(classes=lpb.ClassLabels(labels=[label])),
                    annotator="ann",
                )
        export = labeling.submit_export(lpb.ExportSpec(project_id=pid, dataset_name="labels"))
        export = labeling.wait_job(export.status.job_id)
        labels = export.export_result.dataset
        # The offline store is written by the data service's flusher: retry the match until
        # the history is there (every sample matched).
        for _ in range(60):
            job = data.submit_match_samples(
                dpb.MatchSamplesSpec(
                    sample_source=dpb.SampleSource(
                        dataset=labels,
                        entity_column="entity_key",
                        timestamp_column="event_time",
                        label_column="label",
                    ),
                    features=[
                        dpb.FeatureSelection(
                            feature_group=common_pb2.FeatureGroupRef(name="customers")
                        )
                    ],
                    output_dataset_name="churn-train",
                    drop_unmatched=True,
                )
            )
            done = data.wait_job(job.status.job_id)
            if done.status.state == common_pb2.JOB_STATE_SUCCEEDED and (
                done.dataset_result.datasets[0].row_count == ROWS
            ):
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"the match never saw the features: {done.status.error}")
        matched = done.dataset_result.datasets[0].ref
        spec = automl_spec(
            target="label",
            dataset=(matched.dataset_id, matched.version),
            wall_seconds=120,  # ends after max_trials; a loaded machine needs the slack
            max_trials=3,
        )
        spec.ignore_columns.extend(["entity_key", "event_time"])
        trained = trainer.wait(trainer.submit(spec).status.job_id)
        if trained.status.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"training failed: {trained.status.error}")
        version = serving.register("churn", trained.result.model_bundle.uri)
        serving.create_endpoint(
            spb.EndpointSpec(
                name="churn",
                variants=[variant("blue", "churn", version=version.ref.version)],
                quality=spb.QualityConfig(enabled=True),
            )
        )
        ids = [
            serving.predict("churn", {"f1": float(a), "f2": float(b)}).prediction_id
            for a, b in rng.normal(size=(predictions, 2))
        ]
        return {
            "prediction": ids[-1],
            "group": "feature_group:customers@1",
            "project": f"labeling_project:{pid}",
        }
    finally:
        for client in (data, labeling, trainer, serving):
            client.close()


def _timed(fn: Any, n: int) -> tuple[list[float], Any]:
    fn()  # connections and caches warm
    times, last = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        last = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, last


def _per_call(client: Any, prediction: str, rounds: int) -> dict[str, float]:
    """Median ms of each GetLineage call of the walk from the prediction, by the service
    asked and the kind of id (calls in a walk overlap; this is each one alone; an upstream
    call includes the service's own ancestors of the id)."""
    from atlas_core.lineage import parse, walk

    seen: dict[str, list[float]] = {}

    def timed(service: str, lid: str, limit: int, depth: int) -> Any:
        t0 = time.perf_counter()
        try:
            return client.fetch(service, lid, limit, depth)
        finally:
            key = f"{service} {parse(lid).kind}"
            seen.setdefault(key, []).append((time.perf_counter() - t0) * 1000)

    for _ in range(rounds):
        walk(prediction, timed, workers=1)  # one call at a time: no overlap in the figures
    return {k: round(statistics.median(v), 2) for k, v in sorted(seen.items())}


def _p99(times: list[float]) -> float:
    return float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    predictions, walks = (50, 40) if args.quick else (300, 200)
    from atlas_core.clients import LineageClient

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-lineage-"))
    data_dir = tmp / "suite"
    _atlas(data_dir, "up", "--s3-port", "0", "--base-port", "0")
    try:
        settings = _clients(data_dir)
        t0 = time.perf_counter()
        ids = build_chain(settings, predictions)
        build_s = time.perf_counter() - t0
        with LineageClient.connect(settings) as client:
            up_down, graph = _timed(lambda: client.walk(ids["prediction"]), walks)
            down, from_group = _timed(lambda: client.walk(ids["group"], upstream=False), walks)
            per_call = _per_call(client, ids["prediction"], walks // 4)
    finally:
        _atlas(data_dir, "down")
        shutil.rmtree(tmp, ignore_errors=True)
    statuses = {n.status for n in graph.nodes.values()}
    assert ids["project"] in graph.nodes and ids["group"] in graph.nodes, sorted(graph.nodes)
    assert statuses <= {"ok", "external"}, statuses
    out = {
        "lineage_query_ms": round(_p99(up_down), 2),
        "lineage_query_p50_ms": round(statistics.median(up_down), 2),
        "lineage_nodes": len(graph.nodes),
        "lineage_edges": len(graph.edges),
        "lineage_down_from_features_p99_ms": round(_p99(down), 2),
        "lineage_down_from_features_p50_ms": round(statistics.median(down), 2),
        "lineage_down_from_features_nodes": len(from_group.nodes),
        "predictions_served": predictions,
        "walks": walks,
        "chain_build_s": round(build_s, 1),
        "target_ms": 100,
        "get_lineage_p50_ms_by_call": per_call,
    }
    print(f"{'walk':<34}{'nodes':>6}{'p50 ms':>9}{'p99 ms':>9}")
    print(
        f"{'prediction, up + down':<34}{out['lineage_nodes']:>6}"
        f"{out['lineage_query_p50_ms']:>9.1f}{out['lineage_query_ms']:>9.1f}"
    )
    print(
        f"{'feature group version, down':<34}{out['lineage_down_from_features_nodes']:>6}"
        f"{out['lineage_down_from_features_p50_ms']:>9.1f}"
        f"{out['lineage_down_from_features_p99_ms']:>9.1f}"
    )
    print(f"target: p99 <= {out['target_ms']} ms  ->  {out['lineage_query_ms']} ms")
    print("GetLineage alone, p50 ms: " + ", ".join(f"{k} {v}" for k, v in per_call.items()))
    path = write_results("lineage", out, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Demo step: one turn of the platform's loop on real data (scikit-learn's 8x8 handwritten
digits), every step through the services' RPCs.

pixels into a feature group → a small seed of labelled digits matched point-in-time into a
dataset → AutoML v1, registered and served (entity lookup, capture, ground-truth recording)
→ traffic by digit id, with the true digit attached for part of it → the serving service's
bad-case job sends low-confidence and wrong answers to a labeling project → simulated
annotators of different accuracies label them, consensus and corrections → the export feeds
the labels back to serving as ground truth and, matched point-in-time and merged with the
seed, becomes v2's dataset → AutoML v2, warm-started from v1 and registered as `candidate`
→ a canary of v2 gated on ground truth → promoted or rolled back → the lineage of one
prediction. It prints each step's figures and v1 against v2 on the same held-out labelled
traffic.

Interface: ``run(state, data_dir, shared, config=LoopConfig())`` returns the figures
(``LoopFigures``); standalone against a running suite:
``python demo/loop_step.py --data-dir .atlas``.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
import labeling_step as people  # noqa: E402  (the simulated annotators)

from atlas.common.v1 import common_pb2  # noqa: E402
from atlas.data.v1 import data_service_pb2 as dpb  # noqa: E402
from atlas.serving.v1 import serving_service_pb2 as spb  # noqa: E402
from atlas_core.bundles import load_bundle  # noqa: E402
from atlas_core.clients import DataClient, LabelingClient, TrainerClient, automl_spec  # noqa: E402
from atlas_core.clients.serving import ServingClient, variant  # noqa: E402
from atlas_core.config import S3Settings  # noqa: E402
from atlas_core.launcher import Launcher, RunState, ensure_credentials  # noqa: E402
from atlas_core.rpc import ClientSettings  # noqa: E402
from atlas_core.storage import ArtifactStore, open_artifact_store  # noqa: E402

T0_US = 1_700_000_000_000_000  # when the pixels were observed (2023-11-14)
PIXELS = [f"px_{i}" for i in range(64)]
NON_FEATURES = ["entity_key", "event_time"]


@dataclass(frozen=True)
class LoopConfig:
    """Sizes and budgets of one turn; the integration test runs a smaller one."""

    seed_labels: int = 100  # v1 learns from these only
    traffic: int = 800  # served by v1; bad cases come from here
    holdout: int = 500  # served during the canary; judges v1 against v2
    truth_fraction: float = 0.3  # share of v1's traffic whose outcome becomes known
    budget_s: float = 20.0  # AutoML wall time per model
    low_confidence: float = 0.7
    gate_min_labeled: int = 60
    suffix: str = ""
    rng_seed: int = 0


@dataclass
class LoopFigures:
    v1_accuracy: float = 0.0
    v2_accuracy: float = 0.0
    gain: float = 0.0
    gain_interval: tuple[float, float] = (0.0, 0.0)
    bad_cases: int = 0
    labelled: int = 0
    canary: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Suite:
    data: DataClient
    trainer: TrainerClient
    serving: ServingClient
    labeling: LabelingClient
    store: ArtifactStore

    @classmethod
    def connect(cls, state: RunState, data_dir: Path) -> Suite:
        creds = ensure_credentials(data_dir)
        address = {p.name: p.address for p in state.processes}

        def settings(name: str) -> ClientSettings:
            return ClientSettings(target=address[name], token=creds.admin_token)

        store = open_artifact_store(
            S3Settings(
                endpoint=state.s3_endpoint,
                access_key=creds.s3_access_key,
                secret_key=creds.s3_secret_key,
            )
        )
        return cls(
            DataClient(settings("data")),
            TrainerClient(settings("trainer")),
            ServingClient(settings("serving")),
            LabelingClient(settings("labeling")),
            store,
        )

    def close(self) -> None:
        for client in (self.data, self.trainer, self.serving, self.labeling):
            client.close()


class Loop:
    def __init__(self, suite: Suite, config: LoopConfig) -> None:
        from sklearn.datasets import load_digits

        self.s, self.c = suite, config
        self.digits = load_digits()
        rng = np.random.default_rng(config.rng_seed)
        order = rng.permutation(len(self.digits.target))
        n_seed, n_traffic = config.seed_labels, config.traffic
        self.seed_rows = order[:n_seed]
        self.traffic_rows = order[n_seed : n_seed + n_traffic]
        self.holdout_rows = order[n_seed + n_traffic : n_seed + n_traffic + config.holdout]
        self.rng = rng
        tag = config.suffix.replace("-", "_")
        self.group = f"loop_digits{tag}"
        self.model = self.endpoint = f"digits-loop{config.suffix}"
        self.figures = LoopFigures()

    def truth(self, row: int) -> str:
        return str(int(self.digits.target[row]))

    def timed(self, what: str, started: float) -> float:
        seconds = time.perf_counter() - started
        self.figures.seconds[what] = round(seconds, 2)
        return seconds

    # -- data ----------------------------------------------------------------------------------

    def features(self) -> None:
        from google.protobuf import timestamp_pb2

        started = time.perf_counter()
        self.s.data.create_feature_group(
            dpb.FeatureGroupSpec(
                name=self.group,
                entity_key="digit_id",
                entity_key_type=dpb.ENTITY_KEY_TYPE_STRING,
                event_time_column="observed_at",
                features=[dpb.FeatureSpec(name=p, dtype=dpb.FEATURE_TYPE_FLOAT32) for p in PIXELS],
                description="scikit-learn digits: 64 pixel intensities (0-16) per image",
            )
        )
        ts = timestamp_pb2.Timestamp()
        ts.FromMicroseconds(T0_US)
        records = [
            dpb.FeatureRecord(
                entity_key=dpb.EntityKey(string_key=f"digit-{i}"),
                event_time=ts,
                float32_values=self.digits.data[i].astype("<f4").tobytes(),
            )
            for i in range(len(self.digits.target))
        ]
        written = self.s.data.put_records(self.group, records, batch_size=500).records_written
        print(
            f"features: {written} digits' pixels in feature group {self.group!r} "
            f"({self.timed('features', started):.1f}s)"
        )

    def seed_dataset(self) -> common_pb2.DatasetRef:
        """The seed labels as a sample set (same columns as a labeling export's), matched."""
        event = pd.Timestamp(T0_US + 3_600_000_000, unit="us", tz="UTC")
        table = pa.table(
            {
                "entity_key": [f"digit-{i}" for i in self.seed_rows],
                "label": [self.truth(i) for i in self.seed_rows],
                "event_time": pa.array([event] * len(self.seed_rows), pa.timestamp("us", "UTC")),
            }
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        ref = self.s.store.put_bytes(
            f"demo/loop{self.c.suffix}/seed-labels.parquet", buf.getvalue()
        )
        samples = self.s.data.register_dataset(
            f"loop-seed-labels{self.c.suffix}",
            [common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256)],
            label_column="label",
            entity_column="entity_key",
            timestamp_column="event_time",
        )
        return self.match(samples.ref, f"loop-v1-train{self.c.suffix}")

    def match(self, samples: common_pb2.DatasetRef, output: str) -> common_pb2.DatasetRef:
        job = self.s.data.submit_match_samples(
            dpb.MatchSamplesSpec(
                sample_source=dpb.SampleSource(
                    dataset=samples,
                    entity_column="entity_key",
                    timestamp_column="event_time",
                    label_column="label",
                ),
                features=[
                    dpb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=self.group))
                ],
                mode=dpb.MATCH_MODE_AS_OF,
                output_dataset_name=output,
            )
        )
        done = self.s.data.wait_job(job.status.job_id, timeout=300)
        people._check(done.status, "point-in-time match")
        ds = done.dataset_result.datasets[0]
        print(
            f"  point-in-time match (features as of each label's event time): dataset "
            f"{ds.ref.dataset_id} v{ds.ref.version}, {ds.row_count} rows"
        )
        return ds.ref

    # -- models ----------------------------------------------------------------------------------

    def automl(self, dataset: common_pb2.DatasetRef, what: str) -> Any:
        started = time.perf_counter()
        spec = automl_spec(
            target="label",
            dataset=(dataset.dataset_id, dataset.version),
            wall_seconds=self.c.budget_s,
            seed=self.c.rng_seed,
        )
        spec.ignore_columns.extend(NON_FEATURES)
        job = self.s.trainer.submit(spec)
        done = self.s.trainer.wait(job.status.job_id)
        if done.status.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"{what} training failed: {done.status.error.message}")
        r = done.result
        print(
            f"{what}: AutoML job {job.status.job_id[:8]} on {r.trials_complete} complete trials, "
            f"best CV {r.metric} {r.best.score:.4f} ({self.timed(what, started):.0f}s)"
        )
        return done

    def serve_v1(self, bundle_uri: str) -> int:
        version = self.s.serving.register(self.model, bundle_uri, aliases=["production"])
        spec = spb.EndpointSpec(
            name=self.endpoint, variants=[variant("v1", self.model, alias="production")]
        )
        spec.feature_lookup.feature_groups.add(name=self.group)
        spec.capture.enabled, spec.capture.sample_fraction = True, 1.0
        spec.quality.enabled = True
        self.s.serving.create_endpoint(spec)
        print(
            f"serving: {self.model} v{version.ref.version} at endpoint {self.endpoint!r} "
            "(features looked up by digit id, every request captured and recorded for ground truth)"
        )
        return int(version.ref.version)

    # -- traffic and ground truth -------------------------------------------------------------

    def traffic(self, rows: np.ndarray, truth_fraction: float) -> dict[str, int]:
        """Predict each row by digit id; the true digit of a share of them is attached."""
        outcomes: list[spb.GroundTruth] = []
        seen: dict[str, int] = {}
        right = 0
        for i in rows:
            resp = self.s.serving.predict(self.endpoint, entity_id=f"digit-{i}")
            seen[resp.variant] = seen.get(resp.variant, 0) + 1
            right += resp.prediction.label == self.truth(i)
            if self.rng.random() < truth_fraction:
                gt = spb.GroundTruth(
                    prediction=spb.PredictionTarget(prediction_id=resp.prediction_id)
                )
                gt.outcome.string_value = self.truth(i)
                outcomes.append(gt)
            if len(outcomes) == 200:
                self.s.serving.attach_ground_truth(self.endpoint, outcomes)
                outcomes = []
        if outcomes:
            self.s.serving.attach_ground_truth(self.endpoint, outcomes)
        seen["right"] = right
        return seen

    # -- judged on outcomes ---------------------------------------------------------------------

    def compare(self, v1_uri: str, v2_uri: str) -> None:
        """v1 and v2 on the same held-out labelled rows: accuracy of each and the paired
        difference with a 95% bootstrap interval."""
        rows = self.holdout_rows
        X = pd.DataFrame(self.digits.data[rows], columns=PIXELS)
        truth = np.array([self.truth(i) for i in rows])
        right = {}
        for name, uri in (("v1", v1_uri), ("v2", v2_uri)):
            bundle = load_bundle(self.s.store, self.s.store.key_for_uri(uri))
            right[name] = np.asarray(bundle.predictor.predict(X)).astype(str) == truth
        diff = right["v2"].astype(float) - right["v1"].astype(float)
        draws = np.random.default_rng(self.c.rng_seed).integers(0, len(diff), (2000, len(diff)))
        lo, hi = np.percentile(diff[draws].mean(axis=1), [2.5, 97.5])
        f = self.figures
        f.v1_accuracy, f.v2_accuracy = float(right["v1"].mean()), float(right["v2"].mean())
        f.gain, f.gain_interval = float(diff.mean()), (float(lo), float(hi))
        print(
            f"v1 against v2 on the same {len(rows)} held-out labelled digits: accuracy "
            f"{f.v1_accuracy:.3f} -> {f.v2_accuracy:.3f}, gain {f.gain:+.3f} "
            f"(95% interval {lo:+.3f} .. {hi:+.3f})"
        )


def run(
    state: RunState, data_dir: Path, shared: dict[str, Any], config: LoopConfig | None = None
) -> LoopFigures:
    config = config or LoopConfig()
    suite = Suite.connect(state, data_dir)
    try:
        loop = Loop(suite, config)
        started = time.perf_counter()
        loop.features()
        v1_data = loop.seed_dataset()
        v1 = loop.automl(v1_data, "v1")
        loop.serve_v1(v1.result.model_bundle.uri)
        t0 = time.perf_counter()
        seen = loop.traffic(loop.traffic_rows, config.truth_fraction)
        print(
            f"traffic: {len(loop.traffic_rows)} predictions by digit id, {seen['right']} right "
            f"({loop.timed('traffic', t0):.1f}s)"
        )
        loop.timed("turn", started)
        shared["loop"] = loop.figures
        return loop.figures
    finally:
        suite.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".atlas"))
    parser.add_argument("--budget", type=float, default=LoopConfig.budget_s)
    args = parser.parse_args(argv)
    state = Launcher(args.data_dir).state()
    if state is None:
        print(f"no suite runs from {args.data_dir}: start one with `atlas up --data-dir ...`")
        return 1
    suffix = "-" + re.sub(r"\D", "", datetime.now(timezone.utc).strftime("%H%M%S"))
    figures = run(
        state, args.data_dir.resolve(), {}, LoopConfig(budget_s=args.budget, suffix=suffix)
    )
    print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

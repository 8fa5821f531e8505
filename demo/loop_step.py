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
from atlas.labeling.v1 import labeling_service_pb2 as lpb  # noqa: E402
from atlas.serving.v1 import serving_service_pb2 as spb  # noqa: E402
from atlas.trainer.v1 import trainer_service_pb2 as tpb  # noqa: E402
from atlas_core.bundles import BundleTrust, load_bundle  # noqa: E402
from atlas_core.clients import DataClient, LabelingClient, TrainerClient, automl_spec  # noqa: E402
from atlas_core.clients.lineage import LineageClient  # noqa: E402
from atlas_core.clients.serving import ServingClient, variant  # noqa: E402
from atlas_core.config import S3Settings  # noqa: E402
from atlas_core.launcher import Launcher, RunState, ensure_credentials  # noqa: E402
from atlas_core.lineage import render  # noqa: E402
from atlas_core.rpc import ClientSettings  # noqa: E402
from atlas_core.storage import ArtifactStore, open_artifact_store  # noqa: E402

T0_US = 1_700_000_000_000_000  # when the pixels were observed (2023-11-14)
PIXELS = [f"px_{i}" for i in range(64)]
SAMPLE_COLUMNS = ["entity_key", "label", "event_time"]  # of a labeling export's rows


@dataclass(frozen=True)
class LoopConfig:
    """Sizes and budgets of one turn; the integration test runs a smaller one."""

    seed_labels: int = 80  # v1 learns from these only
    traffic: int = 800  # served by v1; bad cases come from here
    holdout: int = 917  # the other digits: served during the canary, judge v1 against v2
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
    ground_truth_accepted: int = 0
    v1_job: str = ""
    warm_started_from: str = ""
    canary: str = ""
    lineage_kinds: set[str] = field(default_factory=set)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Suite:
    data: DataClient
    trainer: TrainerClient
    serving: ServingClient
    labeling: LabelingClient
    store: ArtifactStore
    trust: BundleTrust  # the suite's signing key, as serving trusts it

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
            BundleTrust.from_files([creds.signing_public_key_file]),
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
        self.served: dict[str, int] = {}  # prediction id -> digit row
        self.last_prediction: dict[str, str] = {}  # variant -> its latest prediction id

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

    def seed_samples(self) -> common_pb2.DatasetRef:
        """The seed labels as a sample set with a labeling export's key columns."""
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
        return samples.ref

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

    def automl(self, dataset: common_pb2.DatasetRef, what: str, alias: str, replaces: bool) -> Any:
        """AutoML on ``dataset``; the trainer registers the bundle in serving under ``alias``
        and, when ``replaces``, warm-starts from the model in production."""
        started = time.perf_counter()
        spec = automl_spec(
            target="label",
            dataset=(dataset.dataset_id, dataset.version),
            wall_seconds=self.c.budget_s,
            seed=self.c.rng_seed,
        )
        spec.register.model_name, spec.register.alias = self.model, alias
        if replaces:
            spec.replaces_model.model_name, spec.replaces_model.alias = self.model, "production"
        job = self.s.trainer.submit(spec)
        done = self.s.trainer.wait(job.status.job_id)
        if done.status.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"{what} training failed: {done.status.error.message}")
        r = done.result
        warm = [p for p in r.priors if p.reason == "base_model"]
        if replaces:
            self.figures.warm_started_from = warm[0].source_job_id if warm else ""
        else:
            self.figures.v1_job = job.status.job_id
        print(
            f"{what}: AutoML job {job.status.job_id[:8]}: {r.trials_complete} complete trials, "
            f"best CV {r.metric} {r.best.score:.4f} ({self.timed(what, started):.0f}s)"
            + (
                f"; warm-started from job {warm[0].source_job_id[:8]} (the model it replaces)"
                if warm
                else ""
            )
        )
        reg = r.registration
        if reg.state != tpb.REGISTRATION_STATE_REGISTERED:
            raise RuntimeError(f"{what} was not registered in serving: {reg.error}")
        print(
            f"  registered by the trainer as {reg.model_version.model_name} "
            f"v{reg.model_version.version} (alias {reg.alias})"
        )
        return done

    def serve_v1(self) -> None:
        spec = spb.EndpointSpec(
            name=self.endpoint, variants=[variant("v1", self.model, alias="production")]
        )
        spec.feature_lookup.feature_groups.add(name=self.group)
        # The demo shares a laptop with AutoML jobs: a lookup deadline far above the 50 ms
        # default, so a busy moment is not a failed request.
        spec.feature_lookup.timeout.FromSeconds(2)
        spec.capture.enabled, spec.capture.sample_fraction = True, 1.0
        spec.capture.flush_interval.FromSeconds(1)
        spec.quality.enabled = True
        self.s.serving.create_endpoint(spec)
        print(
            f"serving: endpoint {self.endpoint!r} serves {self.model}:production (features "
            "looked up by digit id; every request captured and recorded for ground truth)"
        )

    # -- traffic and ground truth -------------------------------------------------------------

    def traffic(self, rows: np.ndarray, truth_fraction: float) -> dict[str, int]:
        """Predict each row by digit id; the true digit of a share of them is attached."""
        outcomes: list[spb.GroundTruth] = []
        seen: dict[str, int] = {}
        right = 0
        for i in rows:
            resp = self.s.serving.predict(self.endpoint, entity_id=f"digit-{i}")
            self.served[resp.prediction_id] = int(i)
            self.last_prediction[resp.variant] = resp.prediction_id
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

    # -- bad cases, people, labels back -------------------------------------------------------

    def bad_cases(self) -> people.Labelled:
        """Serving's bad-case job: low-confidence and wrong-by-ground-truth answers of the
        endpoint become items of a labeling project, each with its prediction and reasons."""
        started = time.perf_counter()
        self.wait_for_capture(len(self.served))
        labels = [str(d) for d in range(10)]
        project = self.s.labeling.create_project(
            lpb.ProjectSpec(
                name=f"digits-bad-cases{self.c.suffix}",
                task_type=lpb.TASK_TYPE_TEXT_CLASSIFICATION,
                labels=[lpb.LabelDefinition(name=label) for label in labels],
                overlap=3,
                consensus=lpb.CONSENSUS_METHOD_WEIGHTED,
                low_confidence_threshold=0.6,
                max_relabel_rounds=2,
                review_fraction=0.05,
                instructions="Which digit do these 8x8 pixel intensities (0-16) show?",
            ),
            request_id=f"loop-bad-cases{self.c.suffix}",
        )
        spec = spb.MonitoringSpec(
            bad_cases=spb.BadCaseSelection(
                reasons=[
                    spb.BAD_CASE_REASON_LOW_CONFIDENCE,
                    spb.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH,
                ],
                max_confidence=self.c.low_confidence,
                labeling_project_id=project.project_id,
            )
        )
        spec.endpoint.endpoint_name = self.endpoint
        job = self.s.serving.stub.SubmitMonitoringJob(
            spb.SubmitMonitoringJobRequest(spec=spec, request_id=f"loop-bad-cases{self.c.suffix}")
        ).job
        done = self.s.serving.wait_monitoring_job(job.status.job_id, timeout=300)
        people._check(done.status, "bad-case selection")
        r = done.bad_case_report
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.reason_counts.items()))
        print(
            f"bad cases: {r.rows_scanned} captured requests scanned, {r.selected} selected "
            f"({reasons}); {r.items_added} items in labeling project {project.project_id} "
            f"({self.timed('bad_cases', started):.1f}s)"
        )
        labelled = people.Labelled(project.project_id, labels)
        for item in self.s.labeling.iter_items(project.project_id, omit_annotations=True):
            row = self.served[item.served_prediction.prediction_id]
            labelled.add(item.item_id, self.truth(row), gold=False, entity=f"digit-{row}")
        self.figures.bad_cases = len(labelled.truth)
        return labelled

    def wait_for_capture(self, rows: int, timeout: float = 60.0) -> None:
        """Captured requests reach the object store in files flushed every second: wait
        until the traffic so far is all there."""
        deadline = time.monotonic() + timeout
        while sum(f.row_count for f in self.s.serving.capture_files(self.endpoint)) < rows:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {rows} captured requests after {timeout:.0f}s")
            time.sleep(0.5)

    def label(self, project: people.Labelled) -> Any:
        """Simulated annotators (one adversarial) label the cases with overlap 3; consensus,
        reviews; the export registers a sample set and attaches the labels to serving."""
        started = time.perf_counter()
        submitted = people._annotate(self.s.labeling, project, self.rng, people.LOOKALIKE)
        reviewed = people._review(self.s.labeling, project, self.rng, people.LOOKALIKE)
        finals = people._finals(self.s.labeling, project)
        right = sum(finals.get(i) == t for i, t in project.truth.items())
        self.figures.labelled = len(finals)
        agreement = self.s.labeling.agreement(project.project_id)
        print(
            f"labeling: {submitted} annotations by {len(people.ANNOTATORS)} simulated annotators "
            f"(one adversarial) and {reviewed} reviews; Fleiss' kappa {agreement.kappa:.2f}; "
            f"final labels {right}/{len(finals)} right ({self.timed('labeling', started):.1f}s)"
        )
        export = people._export(
            self.s.labeling, self.s.store, project.project_id, f"loop-labels{self.c.suffix}"
        )
        gt = export.ground_truth
        self.figures.ground_truth_accepted = int(gt.accepted + gt.updated)
        print(
            f"  the export attached {gt.accepted} human labels to serving as ground truth "
            f"({gt.duplicate} already known, {gt.updated} updated, {gt.rejected} refused)"
        )
        return export

    def v2_dataset(self, export: Any, seed_samples: common_pb2.DatasetRef) -> common_pb2.DatasetRef:
        """The exported labels (entity, label, event time) merged with the seed, matched."""
        projected = self.derive(
            dpb.DeriveDatasetSpec(
                project=dpb.ProjectOp(input=export.dataset, columns=SAMPLE_COLUMNS),
                output_dataset_name=f"loop-labels-samples{self.c.suffix}",
            )
        )
        merged = self.derive(
            dpb.DeriveDatasetSpec(
                merge=dpb.MergeOp(inputs=[seed_samples, projected]),
                output_dataset_name=f"loop-v2-samples{self.c.suffix}",
            )
        )
        return self.match(merged, f"loop-v2-train{self.c.suffix}")

    def derive(self, spec: Any) -> common_pb2.DatasetRef:
        done = self.s.data.wait_job(self.s.data.submit_derive(spec).status.job_id, timeout=300)
        people._check(done.status, "dataset derivation")
        return done.dataset_result.datasets[0].ref

    def canary(self, version: int) -> str:
        """v2 as a 50% canary gated on ground truth (accuracy, any significant drop rolls
        back) over the held-out traffic, whose outcomes are all known."""
        started = time.perf_counter()
        policy = spb.TrafficPolicy(canary=spb.CanaryPolicy(canary_percent=50))
        policy.canary.bake_time.FromSeconds(1)
        alarms = spb.AlarmConfig(
            max_error_rate=0.05,
            min_requests=20,
            quality_gate=spb.QualityGate(
                metric="accuracy", min_labeled=self.c.gate_min_labeled, max_drop=0.0
            ),
        )
        dep = self.s.serving.deploy(
            self.endpoint,
            [variant("v2", self.model, version=version)],
            policy=policy,
            alarms=alarms,
        )
        seen: dict[str, int] = {}
        rows = np.resize(self.holdout_rows, len(self.holdout_rows) * 4)
        state = dep.state
        for chunk in np.array_split(rows, max(1, len(rows) // 50)):
            for k, n in self.traffic(chunk, 1.0).items():
                seen[k] = seen.get(k, 0) + n
            state = self.s.serving.get_deployment(dep.deployment_id).state
            if state not in (spb.DEPLOYMENT_STATE_SHIFTING, spb.DEPLOYMENT_STATE_PENDING):
                break
        final = self.s.serving.wait_deployment(dep.deployment_id, timeout=120)
        outcome = spb.DeploymentState.Name(final.state).removeprefix("DEPLOYMENT_STATE_").lower()
        self.figures.canary = outcome
        served = ", ".join(f"{k} {n}" for k, n in sorted(seen.items()) if k != "right")
        print(
            f"canary of v{version} (50%, gated on ground-truth accuracy, min "
            f"{self.c.gate_min_labeled} labels per side): {outcome} "
            f"({self.timed('canary', started):.1f}s; requests {served})"
            + (f" -- {final.error.message}" if final.error.message else "")
        )
        return outcome

    def lineage(self, prediction_id: str) -> None:
        """The lineage of one of v2's predictions, walked across the services: the model
        version, its training job and dataset, the labels and the labeling project they
        came from, the features, and v1 it replaced."""
        started = time.perf_counter()
        walker = LineageClient(
            {
                "data": self.s.data,
                "trainer": self.s.trainer,
                "serving": self.s.serving,
                "labeling": self.s.labeling,
            }
        )
        graph = walker.walk(prediction_id, downstream=False, children_limit=5)
        self.figures.lineage_kinds = {n.kind for n in graph.nodes.values() if n.status == "ok"}
        print(
            f"lineage of prediction {prediction_id} ({len(graph.nodes)} nodes over "
            f"{len({n.service for n in graph.nodes.values()})} services, "
            f"{self.timed('lineage', started) * 1000:.0f} ms):"
        )
        print("  " + render(graph).replace("\n", "\n  "))

    # -- judged on outcomes ---------------------------------------------------------------------

    def compare(self, v1_uri: str, v2_uri: str) -> None:
        """v1 and v2 on the same held-out labelled rows: accuracy of each and the paired
        difference with a 95% bootstrap interval."""
        rows = self.holdout_rows
        X = pd.DataFrame(self.digits.data[rows], columns=PIXELS)
        truth = np.array([self.truth(i) for i in rows])
        right = {}
        for name, uri in (("v1", v1_uri), ("v2", v2_uri)):
            bundle = load_bundle(self.s.store, self.s.store.key_for_uri(uri), trust=self.s.trust)
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
        seed = loop.seed_samples()
        v1 = loop.automl(
            loop.match(seed, f"loop-v1-train{config.suffix}"), "v1", "production", False
        )
        loop.serve_v1()
        t0 = time.perf_counter()
        seen = loop.traffic(loop.traffic_rows, config.truth_fraction)
        print(
            f"traffic: {len(loop.traffic_rows)} predictions by digit id, {seen['right']} right; "
            f"the true digit of about {config.truth_fraction:.0%} of them attached as ground "
            f"truth ({loop.timed('traffic', t0):.1f}s)"
        )
        export = loop.label(loop.bad_cases())
        v2 = loop.automl(loop.v2_dataset(export, seed), "v2", "candidate", True)
        loop.canary(v2.result.registration.model_version.version)
        loop.compare(v1.result.model_bundle.uri, v2.result.model_bundle.uri)
        loop.lineage(loop.last_prediction["v2"])
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

"""Loop benchmark: the platform judged on outcomes, on the whole suite started by `atlas up`'s
launcher (embedded defaults).

``gate``: 20 seeded canaries on a synthetic binary task (a logistic outcome of 12 features,
fixed seed), 10 challengers better and 10 worse than the champion by a known AUC margin (they
see more or fewer of the informative features; the margins are measured on 40,000 held-out
rows and printed). Each canary takes 50% of the traffic under a ground-truth quality gate
(AUC, any significant drop rolls back); the script sends traffic and attaches the true label
of every answered row, and records whether the gate decided right (better → promoted, worse →
rolled back) and how many labeled predictions it had seen when it decided.

    python bench/loop.py            # all parts
    python bench/loop.py --quick    # 6 canaries (smoke run, not kept)

Writes bench/results/loop.json with keys gate_correct (of 20; target ≥ 18), gate_labels_needed
(median), gate_seconds_median and the margins.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

from atlas.serving.v1 import serving_service_pb2 as pb  # noqa: E402
from atlas_core.clients.serving import ServingClient, variant  # noqa: E402
from atlas_core.config import S3Settings  # noqa: E402
from atlas_core.launcher import Launcher, RunState, ensure_credentials  # noqa: E402
from atlas_core.rpc import ClientSettings  # noqa: E402
from atlas_core.storage import ArtifactStore, open_artifact_store  # noqa: E402

FEATURES = [f"x{i}" for i in range(12)]
CHAMPION_K, BETTER_K, WORSE_K = 6, 12, 2  # informative features each model sees
GATE_MIN_LABELED = 1000  # per side
BATCH_ROWS = 10
ATTACH_EVERY = 100  # labeled rows per AttachGroundTruth call
MAX_ROWS = 30_000  # per canary: undecided after this many rows counts as wrong


def synthetic() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """60,000 rows of 12 standard-normal features and a logistic outcome whose weights fall
    from x0 to x11 (fixed seed); the first 20,000 rows train the models, the rest is traffic."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60_000, len(FEATURES)))
    weights = 0.6 * np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15])
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-X @ weights))).astype(int)
    frame, target = pd.DataFrame(X, columns=FEATURES), pd.Series(y, name="y")
    return frame[:20_000], target[:20_000], frame[20_000:], target[20_000:]


def subset_model(k: int, X: pd.DataFrame, y: pd.Series) -> Any:
    """Logistic regression on the first k features; the bundle's input schema is all 12."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    keep = ColumnTransformer([("keep", "passthrough", FEATURES[:k])], remainder="drop")
    return Pipeline([("keep", keep), ("model", LogisticRegression(max_iter=500))]).fit(X, y)


def write_models(
    store: ArtifactStore, signer: Any, X: pd.DataFrame, y: pd.Series
) -> dict[str, Any]:
    from atlas_core.bundles import write_bundle

    refs = {}
    for name, k in (("champion", CHAMPION_K), ("better", BETTER_K), ("worse", WORSE_K)):
        model = subset_model(k, X, y)
        refs[name] = (
            write_bundle(
                store,
                f"bench/loop/gate/{name}.tar",
                model=model,
                task="binary",
                target="y",
                classes=[0, 1],
                X_train=X,
                y_train=y,
                metrics={},
                lineage={"dataset": {"name": "bench-loop-synthetic", "version": 1}},
                signer=signer,  # the suite's key, which serving trusts
            ),
            model,
        )
    return refs


def margins(models: dict[str, Any], X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    auc = {n: float(roc_auc_score(y, m.predict_proba(X)[:, 1])) for n, (_, m) in models.items()}
    return {
        "champion_auc": round(auc["champion"], 4),
        "better_margin_auc": round(auc["better"] - auc["champion"], 4),
        "worse_margin_auc": round(auc["worse"] - auc["champion"], 4),
    }


def _terminal(state: int) -> bool:
    return state in (
        pb.DEPLOYMENT_STATE_SUCCEEDED,
        pb.DEPLOYMENT_STATE_ROLLED_BACK,
        pb.DEPLOYMENT_STATE_FAILED,
        pb.DEPLOYMENT_STATE_CANCELLED,
    )


def one_canary(
    client: ServingClient,
    seed: int,
    challenger_uri: str,
    champion_uri: str,
    X: pd.DataFrame,
    y: pd.Series,
) -> dict[str, Any]:
    """One endpoint, champion v1 live, challenger v2 as a 50% canary under the gate; traffic
    with truth until the deployment ends. Returns the outcome and the labels it took."""
    name = f"gate-{seed}"
    client.register(name, champion_uri)
    client.register(name, challenger_uri)
    spec = pb.EndpointSpec(name=name, variants=[variant("blue", name, version=1)])
    spec.quality.enabled = True
    client.create_endpoint(spec)
    policy = pb.TrafficPolicy(canary=pb.CanaryPolicy(canary_percent=50))
    policy.canary.bake_time.FromMilliseconds(500)
    gate = pb.QualityGate(metric="auc", min_labeled=GATE_MIN_LABELED, max_drop=0.0)
    started = time.perf_counter()
    dep = client.deploy(
        name,
        [variant("green", name, version=2)],
        policy=policy,
        alarms=pb.AlarmConfig(quality_gate=gate),
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    records = X.to_dict("records")
    truth = y.to_numpy()
    pending: list[pb.GroundTruth] = []
    labeled = sent = 0
    state = dep.state
    while sent < MAX_ROWS:
        idx = order[sent % len(order) : sent % len(order) + BATCH_ROWS]
        sent += len(idx)
        resp = client.predict_batch(name, [records[i] for i in idx])
        for row, i in enumerate(idx):
            outcome = pb.GroundTruth(
                prediction=pb.PredictionTarget(prediction_id=resp.prediction_id, row=row)
            )
            outcome.outcome.int64_value = int(truth[i])
            pending.append(outcome)
        if len(pending) >= ATTACH_EVERY:
            client.attach_ground_truth(name, pending)
            labeled += len(pending)
            pending = []
            state = client.get_deployment(dep.deployment_id).state
            if _terminal(state):
                break
    seconds = time.perf_counter() - started
    client.delete_endpoint(name)
    return {
        "seed": seed,
        "state": pb.DeploymentState.Name(state).removeprefix("DEPLOYMENT_STATE_").lower(),
        "labels": labeled,
        "seconds": round(seconds, 2),
    }


def gate_part(state: RunState, data_dir: Path, seeds: int) -> dict[str, Any]:
    creds = ensure_credentials(data_dir)
    address = {p.name: p.address for p in state.processes}
    store = open_artifact_store(
        S3Settings(
            endpoint=state.s3_endpoint,
            access_key=creds.s3_access_key,
            secret_key=creds.s3_secret_key,
        )
    )
    X_train, y_train, X_live, y_live = synthetic()
    from atlas_core.bundle_signing import BundleSigner

    signer = BundleSigner.from_file(creds.signing_key_file)
    models = write_models(store, signer, X_train, y_train)
    margin = margins(models, X_live, y_live)
    print(
        f"gate: champion AUC {margin['champion_auc']}, better challenger "
        f"{margin['better_margin_auc']:+.4f}, worse {margin['worse_margin_auc']:+.4f} "
        f"(40,000 held-out rows); gate min_labeled {GATE_MIN_LABELED} per side"
    )
    client = ServingClient(ClientSettings(target=address["serving"], token=creds.admin_token))
    runs = []
    for seed in range(seeds):
        better = seed % 2 == 0
        challenger = models["better" if better else "worse"][0]
        run = one_canary(client, seed, challenger.uri, models["champion"][0].uri, X_live, y_live)
        run["challenger"] = "better" if better else "worse"
        run["correct"] = run["state"] == ("succeeded" if better else "rolled_back")
        runs.append(run)
        print(
            f"  canary {seed:2d} ({run['challenger']:<6}): {run['state']:<11} after "
            f"{run['labels']:5d} labels, {run['seconds']:.1f}s "
            + ("ok" if run["correct"] else "WRONG")
        )
    client.close()
    correct = sum(r["correct"] for r in runs)
    needed = statistics.median(r["labels"] for r in runs)
    print(f"gate_correct {correct}/{len(runs)}, gate_labels_needed (median) {needed:.0f}")
    return {
        "gate_correct": correct,
        "gate_canaries": len(runs),
        "gate_labels_needed": needed,
        "gate_seconds_median": statistics.median(r["seconds"] for r in runs),
        "gate_min_labeled_per_side": GATE_MIN_LABELED,
        **margin,
        "gate_runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 canaries; results not kept")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="atlas-bench-loop-"))
    launcher = Launcher(data_dir, s3_port=0, base_port=0)
    results: dict[str, Any] = {}
    try:
        state = launcher.up(echo=lambda line: None)
        results.update(gate_part(state, data_dir, 6 if args.quick else 20))
    finally:
        launcher.down(echo=lambda line: None)
    out = write_results("loop", results, quick=args.quick)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

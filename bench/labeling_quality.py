"""Labeling quality algorithms, no services: label-error detection and Dawid–Skene.

    python bench/labeling_quality.py            # 5 seeds per noise setting, 10 for consensus
    python bench/labeling_quality.py --quick    # 2 and 3 seeds

(a) Error detection on sklearn digits (1,797 images, 10 classes). Labels are corrupted
    with a known mask: uniformly flipped (5%, 10%, 20% of items, each to a random other
    class), or class-conditional at 10% on average (each class c flips to one fixed other
    class with its own rate drawn from U(5%, 15%)). Out-of-sample probabilities come from
    a 5-fold `cross_val_predict` of StandardScaler + LogisticRegression trained on the noisy
    labels. On the same probabilities, precision / recall / F1 against the known mask of:
    our queue (`atlas_labeling.quality.errors.flag_label_issues`, default settings),
    cleanlab's `find_label_issues` called directly with its defaults, and the baseline
    "prediction != label". Every cleanlab `filter_by` rule is reported in the detail.
(b) Consensus on simulated annotators: 1,000 items, 4 classes, six annotators (five honest
    of accuracy 0.6, 0.7, 0.75, 0.8, 0.9 whose mistakes are uniform over the other classes,
    and one adversary answering (truth + 1) mod 4 nine times in ten, else at random), each
    item labeled by 3 distinct annotators drawn at random. Accuracy against the truth of
    `majority_vote` and `dawid_skene`; the same without the adversary in the detail.

Each figure is the median over seeds. Writes bench/results/labeling_quality.json (and a dated
copy, see _results.py) with keys
error_detection_{precision,recall,f1}_{5,10,20}pct, cleanlab_f1_{5,10,20}pct,
baseline_f1_{5,10,20}pct, the same with _classcond_10pct, dawid_skene_accuracy,
majority_accuracy, plus date, commit, machine and the per-seed detail.
Targets: F1 within 0.01 of cleanlab's and above the baseline's, recall >= 0.8, Dawid–Skene
above majority.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from atlas_labeling.quality.errors import FilterBy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

FILTERS: tuple[FilterBy, ...] = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
)
SETTINGS = (("uniform", 0.05), ("uniform", 0.10), ("uniform", 0.20), ("classcond", 0.10))
HONEST = {"a0.60": 0.6, "a0.70": 0.7, "a0.75": 0.75, "a0.80": 0.8, "a0.90": 0.9}
N_ITEMS, N_CLASSES, OVERLAP = 1000, 4, 3


# ---- (a) error detection -------------------------------------------------------------------


def corrupt(y: np.ndarray, kind: str, rate: float, rng: np.random.Generator) -> np.ndarray:
    n_classes = int(y.max()) + 1
    noisy = y.copy()
    if kind == "uniform":
        flip = rng.choice(len(y), int(round(rate * len(y))), replace=False)
        noisy[flip] = (y[flip] + rng.integers(1, n_classes, len(flip))) % n_classes
        return noisy
    # class-conditional: c -> target[c] != c (a random cyclic order), rate_c ~ U(rate/2, 3rate/2)
    cycle = rng.permutation(n_classes)
    target = np.empty(n_classes, dtype=int)
    target[cycle] = np.roll(cycle, -1)
    rates = rng.uniform(rate / 2, 3 * rate / 2, n_classes)
    flip = rng.random(len(y)) < rates[y]
    noisy[flip] = target[y[flip]]
    return noisy


def scores(mask: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    hits = int((mask & truth).sum())
    precision = hits / max(int(mask.sum()), 1)
    recall = hits / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": int(mask.sum())}


def detection_run(kind: str, rate: float, seed: int) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from atlas_labeling.quality.errors import disagrees_with_prediction, flag_label_issues

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    given = corrupt(y, kind, rate, rng)
    wrong = given != y
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    t0 = time.perf_counter()
    probs = cross_val_predict(
        model,
        x,
        given,
        cv=StratifiedKFold(5, shuffle=True, random_state=seed),
        method="predict_proba",
    )
    cv_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = flag_label_issues(given, probs)
    ours_s = time.perf_counter() - t0
    run = {
        "seed": seed,
        "noisy_labels": int(wrong.sum()),
        "cv_accuracy_vs_truth": float((probs.argmax(axis=1) == y).mean()),
        "cv_s": cv_s,
        "ours_s": ours_s,
        "ours": scores(ours, wrong),
        "cleanlab": scores(np.asarray(find_label_issues(given, probs)), wrong),
        "baseline": scores(disagrees_with_prediction(given, probs), wrong),
        "filter_by": {
            f: scores(flag_label_issues(given, probs, filter_by=f), wrong) for f in FILTERS
        },
    }
    return run


# ---- (b) consensus -------------------------------------------------------------------------


def simulate(seed: int, adversary: bool) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    rng = np.random.default_rng(seed)
    names = list(HONEST) + (["adversary"] if adversary else [])
    truth = rng.integers(N_CLASSES, size=N_ITEMS)
    triples = []
    for i, t in enumerate(truth.tolist()):
        for j in rng.choice(len(names), OVERLAP, replace=False):
            name = names[j]
            if name == "adversary":
                shifted = rng.random() < 0.9
                label = (t + 1) % N_CLASSES if shifted else int(rng.integers(N_CLASSES))
            elif rng.random() < HONEST[name]:
                label = t
            else:
                label = (t + int(rng.integers(1, N_CLASSES))) % N_CLASSES
            triples.append((f"item{i}", name, f"class{label}"))
    return {f"item{i}": f"class{t}" for i, t in enumerate(truth.tolist())}, triples


def consensus_run(seed: int, adversary: bool) -> dict[str, Any]:
    from atlas_labeling.quality.consensus import fit_dawid_skene, majority_vote

    truth, triples = simulate(seed, adversary)
    by_item: dict[str, list[tuple[str, str]]] = {}
    for item, annotator, label in triples:
        by_item.setdefault(item, []).append((annotator, label))
    majority = majority_vote(by_item)
    t0 = time.perf_counter()
    fitted = fit_dawid_skene(triples)
    fit_s = time.perf_counter() - t0
    ds = fitted.consensus()
    return {
        "seed": seed,
        "majority_accuracy": float(np.mean([majority[i][0] == t for i, t in truth.items()])),
        "dawid_skene_accuracy": float(np.mean([ds[i][0] == t for i, t in truth.items()])),
        "dawid_skene_iterations": fitted.iterations,
        "dawid_skene_fit_s": fit_s,
        "estimated_annotator_accuracy": fitted.annotator_accuracy(),
    }


# ---- report --------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        v: Any = run
        for key in path:
            v = v[key]
        values.append(v)
    return float(np.median(values))


def _suffix(kind: str, rate: float) -> str:
    pct = f"{round(rate * 100)}pct"
    return pct if kind == "uniform" else f"{kind}_{pct}"


def _library_versions() -> dict[str, str]:
    import cleanlab
    import sklearn

    return {
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "cleanlab": cleanlab.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # cleanlab / sklearn chatter about tiny classes
    detection_seeds = range(2 if args.quick else 5)
    consensus_seeds = range(3 if args.quick else 10)
    t_start = time.monotonic()

    result: dict[str, Any] = {}
    detail: dict[str, Any] = {"detection": {}, "consensus": {}}
    print("error detection on digits (median over seeds)")
    print(f"  {'setting':<18} {'ours P':>7} {'ours R':>7} {'ours F1':>8} {'cleanlab F1':>12}"
          f" {'baseline F1':>12}")  # fmt: skip
    for kind, rate in SETTINGS:
        runs = [detection_run(kind, rate, seed) for seed in detection_seeds]
        sfx = _suffix(kind, rate)
        row = {
            f"error_detection_precision_{sfx}": _median(runs, "ours", "precision"),
            f"error_detection_recall_{sfx}": _median(runs, "ours", "recall"),
            f"error_detection_f1_{sfx}": _median(runs, "ours", "f1"),
            f"cleanlab_f1_{sfx}": _median(runs, "cleanlab", "f1"),
            f"baseline_f1_{sfx}": _median(runs, "baseline", "f1"),
        }
        result.update(row)
        detail["detection"][sfx] = {
            "runs": runs,
            "filter_by_median": {
                f: {m: _median(runs, "filter_by", f, m) for m in ("precision", "recall", "f1")}
                for f in FILTERS
            },
            "baseline_median": {
                m: _median(runs, "baseline", m) for m in ("precision", "recall", "f1")
            },
        }
        values = list(row.values())
        print(f"  {kind + ' ' + f'{rate:.0%}':<18} {values[0]:>7.3f} {values[1]:>7.3f}"
              f" {values[2]:>8.3f} {values[3]:>12.3f} {values[4]:>12.3f}")  # fmt: skip
    print("  cleanlab filter_by rules through our function (median P / R / F1):")
    for sfx, d in detail["detection"].items():
        cells = "  ".join(
            f"{f}={v['precision']:.3f}/{v['recall']:.3f}/{v['f1']:.3f}"
            for f, v in d["filter_by_median"].items()
        )
        print(f"    {sfx:<16} {cells}")

    print("consensus on simulated annotators (median over seeds)")
    for adversary in (True, False):
        runs = [consensus_run(seed, adversary) for seed in consensus_seeds]
        key = "with_adversary" if adversary else "without_adversary"
        detail["consensus"][key] = runs
        ds, mv = _median(runs, "dawid_skene_accuracy"), _median(runs, "majority_accuracy")
        if adversary:
            result["dawid_skene_accuracy"] = ds
            result["majority_accuracy"] = mv
        print(f"  {key:<18} majority {mv:.3f}   dawid-skene {ds:.3f}")

    targets = {}
    for kind, rate in SETTINGS:
        sfx = _suffix(kind, rate)
        f1 = result[f"error_detection_f1_{sfx}"]
        targets[f"f1_within_0.01_of_cleanlab_{sfx}"] = f1 >= result[f"cleanlab_f1_{sfx}"] - 0.01
        targets[f"f1_above_baseline_{sfx}"] = f1 > result[f"baseline_f1_{sfx}"]
        targets[f"recall_at_least_0.8_{sfx}"] = result[f"error_detection_recall_{sfx}"] >= 0.8
    targets["dawid_skene_above_majority"] = (
        result["dawid_skene_accuracy"] > result["majority_accuracy"]
    )
    missed = [k for k, ok in targets.items() if not ok]
    print("targets: " + ("all met" if not missed else "missed " + ", ".join(missed)))

    out = {
        **result,
        "targets_met": targets,
        "libraries": _library_versions(),
        "detail": {
            **detail,
            "quick": args.quick,
            "detection_seeds": list(detection_seeds),
            "consensus_seeds": list(consensus_seeds),
            "total_s": time.monotonic() - t_start,
        },
    }
    written = write_results("labeling_quality", out, quick=args.quick)
    print(f"wrote {written} ({time.monotonic() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

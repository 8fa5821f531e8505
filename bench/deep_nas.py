"""Trainer deep-learning jobs: one-shot NAS against random search at an equal CPU budget.

    python bench/deep_nas.py            # full: seeds 0, 1, 2; 30 supernet + 10 fine-tuning epochs
    python bench/deep_nas.py --quick    # seed 0, 6 + 2 epochs (smoke run)

On sklearn digits (8x8 images; stratified 60% train / 20% validation / 20% test), a CNN search
space of depth 1..4, widths 8/12/16/24/32 and kernels 3/5 per block (11,110 architectures),
under a limit of MAX_MACS multiply-accumulates per image (946 of them fit):

- NAS, the trainer's code (atlas_trainer.deep.nas): the supernet trained once with the
  sandwich rule, an evolutionary search (population 50, 20 generations) scored on the
  first half of the validation rows with batch norm recalibrated per sub-network; its
  PICK_TOP_K best re-scored on the second half, whose best is extracted and fine-tuned
  (second attempt: against the selection bias of picking among ~680 candidates on the rows
  that ranked them). nas_archs_evaluated = distinct architectures it scored.
- Random: architectures drawn uniformly within the same limit, each built with its own
  default initialisation and trained from scratch (AdamW, the same lr and batch size) for
  RANDOM_EPOCHS epochs, until the random arm has used as much process CPU time as the NAS arm
  (time.process_time, one thread; the architecture in training when the budget ends is scored
  as it stands); the one best on the validation rows is kept.

Both arms' picks are scored on the held-out test rows. nas_vs_random = NAS test accuracy -
random test accuracy (median over seeds; >= 0 is the target). Writes
bench/results/deep_nas.json (and a dated copy, see _results.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

MAX_MACS = 150_000
RANDOM_EPOCHS = 20
LR = 3e-3
BATCH = 64
PICK_TOP_K = 10


def _split(seed: int) -> dict[str, Any]:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = ((X - 8.0) / 6.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = y.astype(np.int64)
    X_tr, X_rest, y_tr, y_rest = train_test_split(
        X, y, test_size=0.4, stratify=y, random_state=seed
    )
    X_va, X_te, y_va, y_te = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed
    )
    return {"train": (X_tr, y_tr), "val": (X_va, y_va), "test": (X_te, y_te)}


def _space(generations: int) -> Any:
    from atlas_trainer.deep.models import InputInfo
    from atlas_trainer.deep.nas_space import SearchSpace
    from atlas_trainer.deep.params import NasConfig

    cfg = NasConfig(
        max_layers=4,
        widths=(8, 12, 16, 24, 32),
        kernel_sizes=(3, 5),
        activations=("relu",),
        max_parameters=0,
        max_macs=MAX_MACS,
        population=50,
        generations=generations,
        max_candidates=0,
        fine_tune_epochs=0,
    )
    return SearchSpace("cnn", cfg, InputInfo("image", image_shape=(1, 8, 8)), 10)


def _accuracy(model: Any, inputs: Any, labels: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs))
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def nas_arm(
    data: dict[str, Any], seed: int, supernet_epochs: int, fine_tune_epochs: int
) -> dict[str, Any]:
    import torch
    from sklearn.model_selection import train_test_split

    from atlas_trainer.deep.nas import (
        Evaluator,
        evolve,
        fine_tune,
        pareto_front,
        pick_on_holdout,
        train_supernet,
    )
    from atlas_trainer.deep.supernet import Supernet

    started = time.process_time()
    space = _space(generations=20)
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = data["train"], data["val"], data["test"]
    torch.manual_seed(seed)
    net = Supernet(space)
    train_supernet(
        net, X_tr, y_tr, epochs=supernet_epochs, batch_size=BATCH, lr=LR, weight_decay=0.0,
        seed=seed,
    )  # fmt: skip
    supernet_cpu = time.process_time() - started
    # The search ranks on one half of the validation rows, the final pick among its top
    # PICK_TOP_K is made on the other half (the same rows random search selects on, all of them).
    X_search, X_pick, y_search, y_pick = train_test_split(
        X_va, y_va, test_size=0.5, stratify=y_va, random_state=seed
    )
    evaluator = Evaluator(net, X_tr, X_search, y_search, seed)
    picker = Evaluator(net, X_tr, X_pick, y_pick, seed)
    search_started = time.process_time()
    search = evolve(space, evaluator.accuracy, seed=seed)
    search_cpu = time.process_time() - search_started
    best = pick_on_holdout(search, picker.accuracy, PICK_TOP_K)
    search_best = search.best
    net.recalibrate(best.arch, evaluator.calibration)
    model = net.extract(best.arch)
    inherited_test = _accuracy(model, X_te, y_te)
    fine_tune(model, X_tr, y_tr, epochs=fine_tune_epochs, batch_size=BATCH, lr=LR / 3, seed=seed)
    return {
        "cpu_s": time.process_time() - started,
        "supernet_cpu_s": supernet_cpu,
        "search_cpu_s": search_cpu,
        "archs_evaluated": len(search.scored),
        "search_cpu_per_arch_ms": 1000 * search_cpu / max(1, len(search.scored)),
        "pareto_front_size": len(pareto_front(search.scored)),
        "best": best.to_json("cnn"),
        "pick_top_k": PICK_TOP_K,
        "search_best": search_best.to_json("cnn"),
        "search_val_accuracy_of_pick": evaluator.accuracy(best.arch),
        "pick_val_accuracy_inherited": best.accuracy,
        "search_best_pick_val_accuracy": picker.accuracy(search_best.arch),
        "test_accuracy_inherited": inherited_test,
        "test_accuracy": _accuracy(model, X_te, y_te),
    }


def random_arm(data: dict[str, Any], seed: int, budget_s: float, epochs: int) -> dict[str, Any]:
    import torch

    from atlas_trainer.deep.nas import fine_tune
    from atlas_trainer.deep.supernet import Supernet

    started = time.process_time()
    space = _space(generations=0)
    rng = random.Random(seed + 1000)
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = data["train"], data["val"], data["test"]
    trained: list[tuple[float, Any, Any]] = []

    def out_of_budget() -> bool:
        return time.process_time() - started >= budget_s

    while not out_of_budget():
        arch = space.sample_within(rng)
        torch.manual_seed(seed + len(trained))
        model = Supernet(space).extract(arch)
        for module in model.modules():  # its own default initialisation, not supernet slices
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()
        fine_tune(
            model, X_tr, y_tr, epochs=epochs, batch_size=BATCH, lr=LR, seed=seed,
            should_stop=out_of_budget,
        )  # fmt: skip
        trained.append((_accuracy(model, X_va, y_va), arch, model))
    val, arch, model = max(trained, key=lambda t: t[0])
    return {
        "cpu_s": time.process_time() - started,
        "archs_trained": len(trained),
        "best": {"architecture": arch.to_json(), "macs": space.cost(arch).macs},
        "val_accuracy": val,
        "test_accuracy": _accuracy(model, X_te, y_te),
    }


def run_seed(seed: int, supernet_epochs: int, fine_tune_epochs: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    data = _split(seed)
    nas = nas_arm(data, seed, supernet_epochs, fine_tune_epochs)
    rand = random_arm(data, seed, nas["cpu_s"], RANDOM_EPOCHS)
    return {"seed": seed, "nas": nas, "random": rand}


def run(
    quick: bool, seeds: int = 3, supernet_epochs: int = 30, fine_tune_epochs: int = 10
) -> dict[str, Any]:
    """The NAS-vs-random comparison (``quick``: seed 0, 6 + 2 epochs); bench/deep.py --nas too."""
    load_start = os.getloadavg()[0]
    seed_list, supernet_epochs, fine_tune_epochs = (
        ([0], 6, 2) if quick else (list(range(seeds)), supernet_epochs, fine_tune_epochs)
    )
    # One process per seed (each timed by its own process CPU clock): on a loaded host the
    # scheduler shares cores per process, so seeds in parallel finish sooner, equally timed.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(seed_list), mp_context=context) as pool:
        runs = list(
            pool.map(
                run_seed,
                seed_list,
                [supernet_epochs] * len(seed_list),
                [fine_tune_epochs] * len(seed_list),
            )
        )
    for one in runs:
        nas, rand = one["nas"], one["random"]
        print(
            f"seed {one['seed']}: NAS test {nas['test_accuracy']:.4f} ({nas['archs_evaluated']} "
            f"archs scored, {nas['cpu_s']:.1f} s CPU; best {nas['best']['description']}, "
            f"{nas['best']['macs']} MACs) | random test {rand['test_accuracy']:.4f} "
            f"({rand['archs_trained']} archs trained, {rand['cpu_s']:.1f} s CPU)",
            flush=True,
        )
    gaps = [r["nas"]["test_accuracy"] - r["random"]["test_accuracy"] for r in runs]
    result = {
        "max_macs": MAX_MACS,
        "search_space": "cnn depth 1-4, widths 8/12/16/24/32, kernels 3/5 (11,110 archs; 946 fit)",
        "supernet_epochs": supernet_epochs,
        "fine_tune_epochs": fine_tune_epochs,
        "random_epochs_per_arch": RANDOM_EPOCHS,
        "nas_vs_random": statistics.median(gaps),
        "nas_vs_random_per_seed": gaps,
        "nas_test_accuracy_median": statistics.median(r["nas"]["test_accuracy"] for r in runs),
        "random_test_accuracy_median": statistics.median(
            r["random"]["test_accuracy"] for r in runs
        ),
        "nas_archs_evaluated": min(r["nas"]["archs_evaluated"] for r in runs),
        "random_archs_trained_median": statistics.median(
            r["random"]["archs_trained"] for r in runs
        ),
        "load_average_1m_start_end": [load_start, os.getloadavg()[0]],
        "runs": runs,
    }
    print(
        f"nas_vs_random {result['nas_vs_random']:+.4f} "
        f"(NAS {result['nas_test_accuracy_median']:.4f} "
        f"vs random {result['random_test_accuracy_median']:.4f}); nas_archs_evaluated "
        f"{result['nas_archs_evaluated']}; load average (1 min) {load_start:.1f} -> "
        f"{os.getloadavg()[0]:.1f}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--supernet-epochs", type=int, default=30)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    args = parser.parse_args()
    result = run(args.quick, args.seeds, args.supernet_epochs, args.fine_tune_epochs)
    path = write_results("deep_nas", result, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

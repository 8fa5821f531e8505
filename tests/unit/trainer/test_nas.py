"""One-shot NAS without a network: weight sharing between the supernet and its sub-networks,
extraction, analytic costs against hand counts and torch's flop counter, the sandwich-trained
supernet, the evolutionary search under limits, and the validation of ``deep_learning.nas``."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from google.protobuf import struct_pb2
from sklearn.datasets import load_digits
from torch.utils.flop_counter import FlopCounterMode

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_trainer.deep.models import InputInfo, parameter_count, to_torchscript
from atlas_trainer.deep.nas import (
    Evaluator,
    evolve,
    pareto_front,
    pick_on_holdout,
    train_supernet,
)
from atlas_trainer.deep.nas_space import Arch, SearchSpace, check_nas_limits, cnn_cost, mlp_cost
from atlas_trainer.deep.params import NasConfig, deep_config
from atlas_trainer.deep.supernet import Supernet

DIGITS = InputInfo("image", image_shape=(1, 8, 8))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nas_config(**kw) -> NasConfig:
    base = dict(
        max_layers=3,
        widths=(8, 16, 24),
        kernel_sizes=(3, 5),
        activations=("relu", "gelu"),
        max_parameters=0,
        max_macs=0,
        population=12,
        generations=6,
        max_candidates=0,
        fine_tune_epochs=1,
    )
    return NasConfig(**(base | kw))


def cnn_space(**kw) -> SearchSpace:
    return SearchSpace("cnn", nas_config(**kw), DIGITS, 10)


def mlp_space(**kw) -> SearchSpace:
    cfg = nas_config(kernel_sizes=(), widths=(16, 32, 48), **kw)
    return SearchSpace("mlp", cfg, InputInfo("tabular", features=64), 10)


def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return ((X - 8.0) / 6.0).astype(np.float32), y.astype(np.int64)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


CNN_ARCH = Arch(2, (8, 16, 24), (3, 5, 5), "relu")
MLP_ARCH = Arch(2, (32, 16, 48), (), "gelu")


def test_a_subnetwork_runs_on_slices_of_the_supernets_weights() -> None:
    torch.manual_seed(0)
    net = Supernet(cnn_space()).eval()
    x = images(16)
    with torch.no_grad():
        before = net(x, CNN_ARCH)
        # Outside the sub-network's slices: output channels 16.. of block 1, the kernel's
        # border (block 1 uses the centre 5x5 of 5x5: all; block 0 the centre 3x3 of 5x5).
        net.layers[1].weight[16:] += 1.0
        net.layers[0].weight[:, :, 0, :] += 1.0
        net.layers[2].weight += 1.0  # the third block: depth 2 does not use it
        assert torch.equal(net(x, CNN_ARCH), before)
        # Inside: the first 8 channels of block 0's centre crop.
        net.layers[0].weight[:8, :, 2, 2] += 0.5
        assert not torch.allclose(net(x, CNN_ARCH), before)
    # Training the sub-network only moves its slices of the shared tensors.
    net.train()
    net.zero_grad()
    net(x, CNN_ARCH).sum().backward()
    grad0, grad1 = net.layers[0].weight.grad, net.layers[1].weight.grad
    assert grad0 is not None and grad1 is not None
    assert grad0[:8, :, 1:4, 1:4].abs().sum() > 0 and grad0[8:].abs().sum() == 0
    assert grad0[:, :, 0].abs().sum() == 0  # the kernel's border is not in the crop
    assert grad1[:16, :8].abs().sum() > 0 and grad1[16:].abs().sum() == 0
    assert grad1[:, 8:].abs().sum() == 0  # block 1 reads only the 8 channels block 0 makes
    assert net.layers[2].weight.grad is None
    head = net.head.weight.grad
    assert head is not None and head[:, :16].abs().sum() > 0 and head[:, 16:].abs().sum() == 0


@pytest.mark.parametrize(
    ("space", "arch", "inputs"),
    [
        (cnn_space(), CNN_ARCH, images(64)),
        (cnn_space(), Arch(3, (24, 8, 16), (5, 3, 5), "gelu"), images(64)),
        (mlp_space(), MLP_ARCH, torch.randn(64, 64)),
    ],
)
def test_the_extracted_module_computes_what_the_supernet_computes_for_its_arch(
    space, arch, inputs
) -> None:
    torch.manual_seed(1)
    net = Supernet(space)
    net.recalibrate(arch, [inputs[:32], inputs[32:]])  # non-trivial batch-norm statistics
    model = net.extract(arch, dropout=0.3).eval()
    with torch.no_grad():
        expected = net(inputs, arch)
        torch.testing.assert_close(model(inputs), expected, rtol=1e-5, atol=1e-5)
        # A copy, not a view: the standalone net survives changes to the supernet.
        for p in net.parameters():
            p.add_(1.0)
        torch.testing.assert_close(model(inputs), expected, rtol=1e-5, atol=1e-5)
    scripted = torch.jit.load(__import__("io").BytesIO(to_torchscript(model, inputs[:2])))
    torch.testing.assert_close(scripted(inputs), expected, rtol=1e-5, atol=1e-5)
    assert parameter_count(model) == space.cost(arch).parameters


def test_costs_match_hand_counts_and_torchs_flop_counter() -> None:
    # cnn on 1x8x8: conv 3x3 1->8 at 8x8, conv 5x5 8->16 at 8x8 (then pool), head 16->10.
    cost = cnn_cost((1, 8, 8), (8, 16), (3, 5), 10)
    assert cost.macs == 64 * 8 * 1 * 9 + 64 * 16 * 8 * 25 + 16 * 10 == 209_568
    assert cost.parameters == (8 * 9 + 16) + (16 * 8 * 25 + 32) + (16 * 10 + 10) == 3_490
    # the third block runs at 4x4 after the second's pool
    assert (
        cnn_cost((1, 8, 8), (8, 16, 4), (3, 5, 3), 10).macs == 4608 + 204800 + 16 * 4 * 16 * 9 + 40
    )
    # mlp 64 -> 32 -> 16 -> 10: linear without bias + batch norm per hidden layer
    cost = mlp_cost(64, (32, 16), 10)
    assert cost.macs == 64 * 32 + 32 * 16 + 16 * 10 == 2_720
    assert cost.parameters == (2048 + 64) + (512 + 32) + (160 + 10) == 2_826
    for space, arch, x in (
        (cnn_space(), CNN_ARCH, images(1)),
        (cnn_space(), Arch(3, (24, 8, 16), (5, 3, 5), "relu"), images(1)),
        (mlp_space(), MLP_ARCH, torch.randn(1, 64)),
    ):
        model = Supernet(space).extract(arch).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        assert counter.get_total_flops() == 2 * space.cost(arch).macs  # 2 FLOPs per MAC


def test_sandwich_training_teaches_the_largest_and_the_narrow_subnetworks() -> None:
    X, y = digits()
    X = X.reshape(-1, 1, 8, 8)
    space = cnn_space(widths=(8, 16), activations=("relu",))
    torch.manual_seed(0)
    net = Supernet(space)
    losses: list[float] = []
    train_supernet(
        net, X[:1200], y[:1200], epochs=3, batch_size=64, lr=3e-3, weight_decay=0.0, seed=0,
        on_epoch=lambda e, loss: losses.append(loss),
    )  # fmt: skip
    assert losses[-1] < losses[0]
    evaluator = Evaluator(net, X[:1200], X[1200:], y[1200:], seed=0)
    assert evaluator.accuracy(space.largest()) > 0.9
    # Narrow sub-networks never trained on their own inherit what the sandwich taught, far
    # above chance (0.1) after 3 epochs (the smallest, one 3x3 conv of 8 channels then global
    # pooling, cannot tell digits apart: not asked).
    assert evaluator.accuracy(Arch(3, (16, 16, 8), (5, 5, 5), "relu")) > 0.6
    assert evaluator.accuracy(Arch(3, (8, 16, 16), (3, 3, 3), "relu")) > 0.45


def test_the_search_stays_within_the_limits_and_scores_each_arch_once() -> None:
    X, y = digits()
    X = X.reshape(-1, 1, 8, 8)
    space = cnn_space(max_macs=150_000, max_parameters=6_000, population=16, generations=8)
    feasible = 116  # of the 2 x 258 architectures (counted by enumeration)
    torch.manual_seed(0)
    net = Supernet(space)
    evaluator = Evaluator(net, X[:600], X[1500:], y[1500:], seed=0)
    calls: list[tuple] = []

    def score(arch: Arch) -> float:
        calls.append(arch.key())
        return evaluator.accuracy(arch)

    result = evolve(space, score, seed=0)
    assert len(calls) == len(set(calls)) == len(result.scored) >= 0.8 * feasible
    for s in result.scored:
        assert s.cost.macs <= 150_000 and s.cost.parameters <= 6_000
        assert s.cost == space.cost(s.arch)
    best = result.best
    assert best.accuracy == max(s.accuracy for s in result.scored)
    front = pareto_front(result.scored)
    assert best in front
    for a in front:  # nothing dominates a front member
        assert not any(
            b.accuracy >= a.accuracy
            and b.cost.macs <= a.cost.macs
            and b.cost.parameters <= a.cost.parameters
            and (b.accuracy, b.cost.macs, b.cost.parameters)
            != (a.accuracy, a.cost.macs, a.cost.parameters)
            for b in result.scored
        )
    capped = evolve(cnn_space(max_candidates=20), lambda a: random.random(), seed=1)
    assert len(capped.scored) == 20


def test_the_final_pick_is_made_on_the_held_out_rows_among_the_search_top_k() -> None:
    X, y = digits()
    X = X.reshape(-1, 1, 8, 8)
    space = cnn_space(widths=(8, 16), activations=("relu",), population=12, generations=3)
    torch.manual_seed(0)
    net = Supernet(space)
    train_supernet(
        net, X[:900], y[:900], epochs=1, batch_size=64, lr=3e-3, weight_decay=0.0, seed=0
    )
    search_rows = Evaluator(net, X[:900], X[900:1100], y[900:1100], seed=0)
    holdout = Evaluator(net, X[:900], X[1100:1300], y[1100:1300], seed=0)
    asked: list[tuple] = []

    def held_out(arch: Arch) -> float:
        asked.append(arch.key())
        return holdout.accuracy(arch)

    result = evolve(space, search_rows.accuracy, seed=0)
    pick = pick_on_holdout(result, held_out, top_k=5)
    top = sorted(result.scored, key=lambda s: (-s.accuracy, s.cost.macs, s.cost.parameters))[:5]
    # Only the search's five best are re-scored, each on the held-out rows, and the pick is the
    # best of them there, carrying its held-out accuracy (not the search's).
    assert asked == [s.arch.key() for s in top]
    assert pick.accuracy == max(holdout.accuracy(s.arch) for s in top)
    assert pick.accuracy == Evaluator(net, X[:900], X[1100:1300], y[1100:1300], 0).accuracy(
        pick.arch
    )
    assert pick.arch.key() in {s.arch.key() for s in top}

    # Ranked by a stand-in search score, the held-out score decides: the third becomes the pick,
    # and a candidate outside the top k is never considered however well it would do.
    archs = [s.arch for s in result.scored[:6]]
    ranked = type(result)(
        scored=[
            type(s)(a, 1.0 - i / 10, s.cost) for i, (a, s) in enumerate(zip(archs, result.scored))
        ]
    )
    favourite = {archs[2].key(): 0.9, archs[5].key(): 1.0}
    pick = pick_on_holdout(ranked, lambda a: favourite.get(a.key(), 0.5), top_k=3)
    assert pick.arch == archs[2] and pick.accuracy == 0.9
    assert pick_on_holdout(ranked, lambda a: 0.5, top_k=3).arch == archs[0]  # ties: search order


def spec(architecture: str = "cnn", params: dict | None = None, **nas) -> pb.TrainingJobSpec:
    struct = struct_pb2.Struct()
    struct.update(params or {})
    workers = nas.pop("workers", 0)
    return pb.TrainingJobSpec(
        target_column="y",
        deep_learning=pb.DeepLearningSpec(
            architecture=architecture, params=struct, workers=workers, nas=pb.NasSpec(**nas)
        ),
    )


def test_nas_defaults_and_json_round_trip() -> None:
    cfg = deep_config(spec("cnn"))
    assert cfg.nas == NasConfig(3, (8, 12, 16, 24, 32), (3, 5), ("relu",), 0, 0, 50, 20, 0, 2)
    assert type(cfg).from_json(cfg.to_json()) == cfg
    mlp = deep_config(spec("mlp", widths=[64, 16, 64], max_macs=5000)).nas
    assert mlp is not None and mlp.widths == (16, 64) and mlp.kernel_sizes == ()
    assert mlp.max_macs == 5000 and mlp.max_parameters == 0


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec("mobilenet"), "deep_learning.architecture"),
        (spec("text_cnn"), "deep_learning.architecture"),
        (spec("cnn", workers=2), "deep_learning.workers"),
        (spec("cnn", {"channels": [8]}), "deep_learning.params.channels"),
        (spec("mlp", {"checkpointing": True}), "deep_learning.params.checkpointing"),
        (spec("cnn", max_macs=0), "deep_learning.nas.max_macs"),
        (spec("cnn", max_parameters=-5), "deep_learning.nas.max_parameters"),
        (spec("cnn", activations=["relu", "swish"]), "deep_learning.nas.activations[1]"),
        (spec("cnn", kernel_sizes=[3, 4]), "deep_learning.nas.kernel_sizes[1]"),
        (spec("mlp", kernel_sizes=[3]), "deep_learning.nas.kernel_sizes"),
        (spec("cnn", widths=[8, 0]), "deep_learning.nas.widths[1]"),
        (spec("cnn", max_layers=9), "deep_learning.nas.max_layers"),
        (spec("cnn", population=3), "deep_learning.nas.population"),
        (spec("cnn", population=1001), "deep_learning.nas.population"),
        (spec("cnn", generations=-1), "deep_learning.nas.generations"),
        (spec("cnn", fine_tune_epochs=101), "deep_learning.nas.fine_tune_epochs"),
    ],
)
def test_bad_nas_specs_name_the_field(bad: pb.TrainingJobSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        deep_config(bad)
    assert err.value.reason == "BAD_NAS_SPEC"
    assert str(err.value).startswith(field + ":"), str(err.value)


def test_limits_below_the_smallest_subnetwork_are_refused() -> None:
    cfg = nas_config(widths=(8, 16), kernel_sizes=(3, 5))
    smallest = cnn_cost((1, 8, 8), (8,), (3,), 10)
    check_nas_limits(
        nas_config(max_macs=smallest.macs, max_parameters=smallest.parameters), "cnn", DIGITS, 10
    )
    for field, limits in (
        ("max_macs", {"max_macs": smallest.macs - 1}),
        ("max_parameters", {"max_parameters": smallest.parameters - 1}),
    ):
        with pytest.raises(InvalidArgument) as err:
            check_nas_limits(nas_config(**limits), "cnn", DIGITS, 10)
        assert err.value.reason == "BAD_NAS_SPEC"
        assert str(err.value).startswith(f"deep_learning.nas.{field}: "), str(err.value)
        assert "below the smallest sub-network" in str(err.value)
    assert cfg.widths == (8, 16)

"""Deep-learning building blocks without a network: tensor columns, the shared text encoding,
the bundle model, and recomputation's measured activation memory."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from google.protobuf import struct_pb2

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.ml import TorchNetModel, text_token_ids
from atlas_trainer.deep.inputs import prepare
from atlas_trainer.deep.job import tensor_data
from atlas_trainer.deep.loop import new_model
from atlas_trainer.deep.memory import measure
from atlas_trainer.deep.models import InputInfo, build_model, segment_plan, to_torchscript
from atlas_trainer.deep.params import DeepParams, deep_config


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: more threads only contend on a shared host
    yield
    torch.set_num_threads(threads)


def config(architecture: str, **params):
    struct = struct_pb2.Struct()
    struct.update(params)
    return deep_config(
        pb.TrainingJobSpec(
            target_column="y",
            deep_learning=pb.DeepLearningSpec(architecture=architecture, params=struct),
        )
    )


def test_a_tensor_column_of_equal_sizes_becomes_an_image_batch() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"img": [rng.random(12).tolist() for _ in range(30)]})
    labels = pd.Series(["a", "b", "c"] * 10)
    prepared = prepare(
        frame,
        labels,
        config("cnn", image_column="img", image_shape=[3, 2, 2]),
        target="y",
        max_classes=10,
    )
    assert prepared.inputs.shape == (30, 3, 2, 2)
    assert prepared.columns == [f"img_{i}" for i in range(12)]
    assert prepared.classes == ["a", "b", "c"]
    assert len(prepared.train_rows) + len(prepared.validation_rows) == 30


def test_hashed_ngrams_are_the_same_in_every_process_and_pad_with_zero() -> None:
    encoding = {"mode": "hashed", "buckets": 1000, "ngrams": 2, "max_len": 8}
    ids = text_token_ids(["Make America great", None], encoding)
    # crc32, not Python's salted hash: a fixed answer
    assert ids[0].tolist()[:5] != [0] * 5 and ids[1].tolist() == [0] * 8
    assert (ids[0][:5] >= 1).all() and (ids[0][5:] == 0).all()  # 3 words + 2 bigrams
    assert np.array_equal(ids, text_token_ids(["make america GREAT", ""], encoding))


def test_the_bundle_model_pickles_and_answers_like_the_net() -> None:
    cfg = config("embedding_bag", text_mode="tokens", max_len=6)
    texts = pd.DataFrame({"text": ["good day", "bad day", "good night", "bad night"] * 5})
    labels = pd.Series(["pos", "neg", "pos", "neg"] * 5)
    prepared = prepare(texts, labels, cfg, target="y", max_classes=10)
    net = new_model(cfg, tensor_data(prepared)).eval()
    model = TorchNetModel(
        columns=prepared.columns,
        classes=prepared.classes,
        encoding=prepared.encoding,
        script=to_torchscript(net, torch.from_numpy(prepared.inputs[:2])),
    )
    restored = pickle.loads(pickle.dumps(model))
    proba = restored.predict_proba(texts)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(prepared.inputs)), 1).numpy()
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
    assert set(restored.predict(texts)) <= {"pos", "neg"}


def test_segment_plans_cover_every_block_once() -> None:
    assert segment_plan(16, "segments") == [
        (0, 4, True),
        (4, 8, True),
        (8, 12, True),
        (12, 16, False),  # the last segment is needed first in backward: never recomputed
    ]
    assert segment_plan(8, "segments") == [(0, 3, True), (3, 6, True), (6, 8, False)]
    assert segment_plan(1, "segments") == [(0, 1, True)]
    assert segment_plan(3, "every_block") == [(0, 1, True), (1, 2, True), (2, 3, True)]
    assert segment_plan(3, "off") == [(0, 3, False)]
    assert segment_plan(0, "segments") == []
    for n in range(1, 40):
        plan = segment_plan(n, "segments")
        assert [i for a, b, _ in plan for i in range(a, b)] == list(range(n))


def test_checkpointing_true_means_segments_and_false_off() -> None:
    assert DeepParams(checkpointing=True).checkpointing == "segments"
    assert DeepParams(checkpointing=False).checkpointing == "off"
    assert DeepParams().checkpointing == "off"
    assert DeepParams(checkpointing="every_block").checkpointing == "every_block"
    with pytest.raises(ValueError, match="checkpointing"):
        DeepParams(checkpointing="sometimes")


@pytest.mark.parametrize("mode", ["segments", "every_block"])
def test_recomputation_at_least_halves_the_peak_activation_memory_of_a_deep_mlp(mode) -> None:
    torch.manual_seed(0)
    info = InputInfo("tabular", features=64)
    model = build_model("mlp", DeepParams(hidden=[256] * 16), info, classes=10)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    model.checkpointing = mode
    memory = measure(model, x, y)
    assert memory.checkpointing == mode  # the model's own setting is kept
    assert model.checkpointing == mode
    assert 0 < memory.with_checkpointing <= 0.5 * memory.without_checkpointing, memory
    # the recomputed run's activations count: with every block checkpointed the peak is
    # above what forward leaves held (segments: the uncheckpointed last segment is as large)
    model.train()
    end_of_forward = _end_of_forward_bytes(model, x, y)
    assert memory.with_checkpointing >= end_of_forward
    if mode == "every_block":
        assert memory.with_checkpointing > end_of_forward


def _end_of_forward_bytes(model, x, y) -> int:
    from atlas_trainer.deep.memory import _Tracker

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    tracker = _Tracker(params)
    model.tracker = tracker
    try:
        with torch.autograd.graph.saved_tensors_hooks(tracker.pack, lambda t: t):
            torch.nn.functional.cross_entropy(model(x), y)
    finally:
        model.tracker = None
    return sum(tracker.seen.values())


@pytest.mark.parametrize(
    ("architecture", "info", "params", "inputs"),
    [
        ("mlp", InputInfo("tabular", features=64), {"hidden": [128] * 6}, (128, 64)),
        ("cnn", InputInfo("image", image_shape=(1, 8, 8)), {"channels": [16] * 6}, (64, 1, 8, 8)),
    ],
)
@pytest.mark.parametrize("mode", ["segments", "every_block"])
def test_recomputation_saves_memory_and_keeps_the_gradients(
    architecture, info, params, inputs, mode
) -> None:
    torch.manual_seed(0)
    model = build_model(architecture, DeepParams(**params), info, classes=10)
    x, y = torch.randn(*inputs), torch.randint(0, 10, (inputs[0],))
    model.checkpointing = mode
    memory = measure(model, x, y)
    assert 0 < memory.with_checkpointing < memory.without_checkpointing, memory
    # recomputation runs the checkpointed blocks' forward twice: the same gradients
    torch.manual_seed(1)  # the same dropout masks in both passes
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.checkpointing = "off"
    torch.manual_seed(1)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for a, p in zip(with_grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-5)


def test_pretrained_word_vectors_bring_words_of_the_same_contexts_together() -> None:
    rng = np.random.default_rng(0)
    groups = [["red", "apple", "cherry", "ruby"], ["blue", "sky", "ocean", "sapphire"]]
    rows = [" ".join(rng.permutation(groups[i % 2])) for i in range(200)]
    cfg = config("embedding_bag", pretrain_epochs=5, embedding_dim=16)
    prepared = prepare(
        pd.DataFrame({"text": rows}),
        pd.Series(["x", "y"] * 100),
        cfg,
        target="y",
        max_classes=10,
    )
    data = tensor_data(prepared)
    from atlas_trainer.deep.pretrain import pretrain_embedding

    vectors = pretrain_embedding(data.train_inputs, prepared.info.vocab_size, 16, epochs=5, seed=0)
    vocab = prepared.encoding["vocab"]

    def cosine(a: str, b: str) -> float:
        u, v = vectors[vocab[a]], vectors[vocab[b]]
        return float(u @ v / (u.norm() * v.norm()))

    words = [w for g in groups for w in g]
    for group in groups:
        for word in group:  # every word's nearest neighbour is of its own contexts
            nearest = max((w for w in words if w != word), key=lambda w: cosine(word, w))
            assert nearest in group, (word, nearest)
    same = np.mean([cosine(g[0], w) for g in groups for w in g[1:]])
    across = np.mean([cosine(a, b) for a in groups[0] for b in groups[1]])
    assert same > across + 0.1, (same, across)
    assert float(vectors[0].abs().sum()) == 0.0  # padding stays zero
    data.embedding = vectors.numpy()
    net = new_model(cfg, data)  # the net starts from them
    torch.testing.assert_close(net.stem.weight.detach(), vectors)


def test_pretraining_needs_word_tokens() -> None:
    from atlas_core.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="deep_learning.params.pretrain_epochs"):
        config("text_cnn", pretrain_epochs=2, text_mode="hashed")

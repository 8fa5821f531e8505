"""Bad deep-learning submissions are refused before a job is queued, each with a status and
a message naming the field to fix."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.rpc.status import error_from_rpc

from .test_deep_learning_jobs import deep_spec, tweets

pytestmark = pytest.mark.slow
INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def _refused(h, spec) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
    return err.value


async def test_bad_deep_learning_specs_and_data_name_the_field(trainer_harness) -> None:
    h = trainer_harness
    digits = load_digits(as_frame=True).frame
    image_ref = await asyncio.to_thread(h.upload, "uploads/digits.parquet", digits)
    rng = np.random.default_rng(0)
    mixed = pd.DataFrame(
        {
            "img": [rng.random(64).tolist() for _ in range(20)]
            + [rng.random(49).tolist() for _ in range(2)],
            "label": [i % 2 for i in range(22)],
        }
    )
    mixed_ref = await asyncio.to_thread(h.upload, "uploads/mixed.parquet", mixed)
    text = tweets(200)
    text.loc[7, "text"] = "   "
    text_ref = await asyncio.to_thread(h.upload, "uploads/tweets.parquet", text)
    many = pd.DataFrame({"x": np.arange(1200.0), "y": [f"c{i}" for i in range(1200)]})
    many_ref = await asyncio.to_thread(h.upload, "uploads/many.parquet", many)

    cases = [
        (
            deep_spec(image_ref, "target", "resnet9000"),
            INVALID,
            "BAD_ARCHITECTURE",
            "deep_learning.architecture",
        ),
        (
            deep_spec(image_ref, "target", "cnn", params={"hidden": [64]}),
            INVALID,
            "BAD_DEEP_PARAMS",
            "deep_learning.params.hidden: does not apply to architecture cnn",
        ),
        (
            deep_spec(image_ref, "target", "mlp", params={"lr": -1}),
            INVALID,
            "BAD_DEEP_PARAMS",
            "deep_learning.params.lr",
        ),
        (
            deep_spec(image_ref, "target", "mlp", params={"colour": "red"}),
            INVALID,
            "BAD_DEEP_PARAMS",
            "deep_learning.params.colour",
        ),
        (
            deep_spec(image_ref, "target", "cnn", params={"channels": [16, 0]}),
            INVALID,
            "BAD_DEEP_PARAMS",
            "deep_learning.params.channels[1]",
        ),
        (
            deep_spec(image_ref, "target", "mlp", epochs=-1),
            INVALID,
            "BAD_DEEP_PARAMS",
            "deep_learning.epochs",
        ),
        (
            deep_spec(image_ref, "target", "cnn", params={"image_shape": [1, 4, 4]}),
            INVALID,
            "BAD_DEEP_INPUT",
            "deep_learning.params.image_shape: [1, 4, 4] holds 16 values but each image has 64",
        ),
        (
            deep_spec(mixed_ref, "label", "cnn", params={"image_column": "img"}),
            INVALID,
            "BAD_DEEP_INPUT",
            "images of mixed sizes in column 'img': 64 values in most rows, 49 in row 20",
        ),
        (
            deep_spec(text_ref, "source", "embedding_bag"),
            INVALID,
            "BAD_DEEP_INPUT",
            "deep_learning.params.text_column: column 'text' has 1 rows with empty or missing "
            "text (first: row 7)",
        ),
        (
            deep_spec(text_ref, "source", "text_cnn", params={"text_column": "body"}),
            INVALID,
            "BAD_DEEP_INPUT",
            "column 'body' is not in the dataset",
        ),
        (
            deep_spec(many_ref, "y", "mlp"),
            INVALID,
            "TOO_MANY_CLASSES",
            "target_column 'y' has 1200 classes; a deep-learning job takes at most 1000",
        ),
        (
            deep_spec(image_ref, "target", "mlp", workers=4096),
            INVALID,
            "BAD_DEEP_PARAMS",
            "deep_learning.workers",
        ),
        (
            deep_spec(image_ref, "target", "mlp", workers=64),
            grpc.StatusCode.FAILED_PRECONDITION,
            "TOO_MANY_WORKERS",
            "deep_learning.workers=64 but this trainer has",
        ),
    ]
    regression = deep_spec(image_ref, "target", "mlp")
    regression.task_type = pb.TASK_TYPE_REGRESSION
    cases.append((regression, INVALID, "UNSUPPORTED_TASK", "task_type"))
    # One-shot NAS: each refused naming the field (deep_learning.nas, BAD_NAS_SPEC).
    for architecture, nas, field in (
        ("mobilenet", pb.NasSpec(), "deep_learning.architecture: architecture mobilenet has no"),
        ("cnn", pb.NasSpec(max_macs=0), "deep_learning.nas.max_macs: a limit must be positive"),
        ("cnn", pb.NasSpec(max_parameters=-1), "deep_learning.nas.max_parameters"),
        ("cnn", pb.NasSpec(activations=["mish"]), "deep_learning.nas.activations[0]"),
        ("cnn", pb.NasSpec(kernel_sizes=[3, 4]), "deep_learning.nas.kernel_sizes[1]"),
        ("cnn", pb.NasSpec(population=2), "deep_learning.nas.population"),
        ("cnn", pb.NasSpec(generations=5000), "deep_learning.nas.generations"),
        # the data decides: 1x8x8 images, 10 classes; the smallest cnn needs 4,688 MACs
        ("cnn", pb.NasSpec(max_macs=1000), "deep_learning.nas.max_macs: 1000 is below the"),
        ("mlp", pb.NasSpec(max_parameters=100), "deep_learning.nas.max_parameters: 100 is"),
    ):
        bad = deep_spec(image_ref, "target", architecture)
        bad.deep_learning.nas.CopyFrom(nas)
        cases.append((bad, INVALID, "BAD_NAS_SPEC", field))

    for spec, code, reason, text_part in cases:
        err = await _refused(h, spec)
        assert err.code() == code, (reason, err.details())
        assert text_part in err.details(), (reason, err.details())
        assert error_from_rpc(err).reason == reason, err.details()
    jobs = await h.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
    assert not jobs.jobs  # nothing was queued

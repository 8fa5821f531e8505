"""ComputeBiasMetrics over gRPC, checked against the definitions computed by hand (SageMaker
Clarify's pre-training metrics: CI, DPL, KL, JS, KS, total variation)."""

from __future__ import annotations

import asyncio
import math

import grpc
import numpy as np
import pandas as pd
import pytest

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.rpc.status import error_from_rpc

from .test_dataset_training import small_spec, train

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
# Facet "a": 80 rows, 48 approved (q = 0.6); facet "b": 40 rows, 10 approved (q = 0.25).
COUNTS = {"a": (80, 48), "b": (40, 10)}


def loans() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for group, (n, positive) in COUNTS.items():
        for i in range(n):
            label = int(i < positive)
            rows.append({"group": group, "score": label + rng.normal(0, 0.3), "approved": label})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def by_hand(facet: str) -> dict[str, float]:
    """Metrics of ``facet`` (d) against the other group (a), from the definitions."""
    (n_d, pos_d), (n_a, pos_a) = COUNTS[facet], COUNTS["b" if facet == "a" else "a"]
    q_d, q_a = pos_d / n_d, pos_a / n_a
    p_a, p_d = (1 - q_a, q_a), (1 - q_d, q_d)  # (negative, positive) outcome shares
    mix = [(x + y) / 2 for x, y in zip(p_a, p_d)]
    return {
        "class_imbalance": (n_a - n_d) / (n_a + n_d),
        "difference_in_proportions": q_a - q_d,
        "kl_divergence": sum(x * math.log(x / y) for x, y in zip(p_a, p_d)),
        "js_divergence": 0.5
        * (
            sum(x * math.log(x / m) for x, m in zip(p_a, mix))
            + sum(y * math.log(y / m) for y, m in zip(p_d, mix))
        ),
        "ks_distance": max(abs(x - y) for x, y in zip(p_a, p_d)),
        "total_variation": 0.5 * sum(abs(x - y) for x, y in zip(p_a, p_d)),
        "rows": n_d,
    }


async def test_bias_metrics_match_a_hand_computation(trainer_harness):
    h = trainer_harness
    artifact = await asyncio.to_thread(h.upload, "uploads/loans.parquet", loans())
    job = await train(h, small_spec(dataset_artifact=artifact, target="approved", ignore=()))
    job_id = job.status.job_id

    response = await h.stub.ComputeBiasMetrics(
        pb.ComputeBiasMetricsRequest(job_id=job_id, facet_column="group")
    )
    got = {m.facet_value: m for m in response.metrics}
    assert set(got) == {"a", "b"}
    for facet in ("a", "b"):
        expected = by_hand(facet)
        metrics = got[facet]
        assert metrics.facet_column == "group"
        for name, value in expected.items():
            assert getattr(metrics, name) == pytest.approx(value, abs=1e-9), (facet, name)
    # Spot values, so a shared mistake in both computations cannot hide: CI(a) = (40-80)/120.
    assert got["a"].class_imbalance == pytest.approx(-1 / 3)
    assert got["a"].difference_in_proportions == pytest.approx(0.25 - 0.6)
    assert got["a"].total_variation == pytest.approx(0.35)

    only_b = await h.stub.ComputeBiasMetrics(
        pb.ComputeBiasMetricsRequest(job_id=job_id, facet_column="group", facet_values=["b"])
    )
    assert [m.facet_value for m in only_b.metrics] == ["b"]

    for request, reason in (
        (pb.ComputeBiasMetricsRequest(job_id=job_id), "NO_FACET"),
        (pb.ComputeBiasMetricsRequest(job_id=job_id, facet_column="nope"), "UNKNOWN_COLUMN"),
        (
            pb.ComputeBiasMetricsRequest(job_id=job_id, facet_column="group", facet_values=["c"]),
            "FACET_VALUE_NOT_FOUND",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await h.stub.ComputeBiasMetrics(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_from_rpc(caught.value).reason == reason

"""SubmitMatchSamplesJob out of core (matching.memory_budget_bytes set) through the job API:
the in-memory join's dataset row for row with a budget that forces several buckets, as-of and
as-known-at; drop_unmatched over two groups; a budget too small for one bucket fails
FAILED_PRECONDITION with the size needed and publishes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings, connect, create_server
from atlas_data.config import MatchingSettings
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs

from .conftest import TOKEN, DataHarness, data_settings
from .test_datasets import wait_job
from .test_match_dask import GROUP, local_join, match_spec, published, seed, submit

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
BUDGET = 30_000  # bytes: ~5 buckets for this history and 600 samples


@asynccontextmanager
async def budget_data_service(
    tmp_path: Path, s3: S3Settings, budget: int
) -> AsyncIterator[DataHarness]:
    matching = MatchingSettings(memory_budget_bytes=budget, spill_dir=str(tmp_path / "spill"))
    settings = data_settings(tmp_path, s3).model_copy(update={"matching": matching})
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    try:
        async with connect(ClientSettings(target=server.address, token=TOKEN)) as channel:
            yield DataHarness(server, service, channel, pb_grpc.DataServiceStub(channel), settings)
    finally:
        await server.stop(0)
        service.stop()


async def test_out_of_core_job_publishes_the_in_memory_result_as_of_and_as_known_at(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with budget_data_service(tmp_path, s3_settings, BUDGET) as harness:
        samples_ref, samples = await seed(harness)
        for mode, known in ((pb.MATCH_MODE_AS_OF, False), (pb.MATCH_MODE_AS_KNOWN_AT, True)):
            job_id = await submit(harness, match_spec(samples_ref, mode, f"o-{int(known)}"))
            done = await wait_job(harness.stub, job_id)
            assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
            got, want = published(harness, done), local_join(harness, samples, known)
            assert got.num_rows == 600 and got.equals(want.cast(got.schema))
            assert 0 < got.column("score").null_count < 600
        assert not list((tmp_path / "spill").iterdir())  # spill files removed


async def test_drop_unmatched_over_two_groups_out_of_core(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with budget_data_service(tmp_path, s3_settings, BUDGET) as harness:
        samples_ref, samples = await seed(harness)
        spec = match_spec(samples_ref, pb.MATCH_MODE_AS_OF, "two")
        del spec.features[:]
        for prefix, names in (("a_", ["score"]), ("b_", ["n"])):
            spec.features.append(
                pb.FeatureSelection(
                    feature_group=common_pb2.FeatureGroupRef(name=GROUP),
                    feature_names=names,
                    column_prefix=prefix,
                )
            )
        spec.drop_unmatched = True
        done = await wait_job(harness.stub, await submit(harness, spec))
        assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
        want = local_join(harness, samples, False)
        keep = np.asarray(want.column("score").is_valid())
        expected = pa.table(
            {
                **{c: samples.column(c) for c in ("user_id", "when", "label")},
                "a_score": want.column("score"),
                "b_n": want.column("n"),
            }
        ).filter(pa.array(keep))
        got = published(harness, done)
        assert 0 < got.num_rows < 600 and got.equals(expected.cast(got.schema))
        assert done.dataset_result.unmatched_samples == 600 - int(keep.sum())


async def test_a_budget_too_small_fails_with_the_size_needed_and_publishes_nothing(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with budget_data_service(tmp_path, s3_settings, 500) as harness:
        samples_ref, _ = await seed(harness)
        job_id = await submit(harness, match_spec(samples_ref, pb.MATCH_MODE_AS_OF, "tiny"))
        done = await wait_job(harness.stub, job_id)
        assert done.status.state == common_pb2.JOB_STATE_FAILED
        error = done.status.error
        # The job API carries the code and message (the reason is MATCH_MEMORY_BUDGET).
        assert error.code == "FAILED_PRECONDITION", error
        needed = re.search(r"matching.memory_budget_bytes to at least (\d+)", error.message)
        assert needed and int(needed.group(1)) > 500, error.message
        listed = await harness.stub.ListDatasets(pb.ListDatasetsRequest())
        assert "tiny" not in [d.name for d in listed.datasets]
        assert not list((tmp_path / "spill").iterdir())

"""A real trainer service on port 0 beside a real data service (SQLite, LMDB, SeaweedFS)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc import aio
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.config import AuthSettings, DatabaseSettings, S3Settings, ServerSettings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_trainer.config import PeerSettings, TrainerJobSettings, TrainerSettings
from atlas_trainer.service import TrainerService
from atlas_trainer.servicer import trainer_service_def
from tests.support.signing import signing_settings

from ..data.conftest import TOKEN, DataHarness, running_data_service


@dataclass
class TrainerHarness:
    server: AtlasServer
    service: TrainerService
    stub: pb_grpc.TrainerServiceStub
    data: DataHarness

    def upload(self, key: str, frame: pd.DataFrame) -> common_pb2.ArtifactRef:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
        ref = self.service.rt.artifacts.put_bytes(key, buf.getvalue())
        return common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)


@pytest.fixture
async def trainer_harness(tmp_path: Path, s3_settings: S3Settings) -> AsyncIterator[TrainerHarness]:
    async with running_data_service(tmp_path / "data", s3_settings) as data_harness:
        async with _trainer(tmp_path, s3_settings, data_harness) as harness:
            yield harness


@asynccontextmanager
async def _trainer(
    tmp_path: Path, s3_settings: S3Settings, data_harness: DataHarness
) -> AsyncIterator[TrainerHarness]:
    settings = TrainerSettings(
        server=ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"]})),
        s3=s3_settings,
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'trainer.db'}"),
        data_dir=tmp_path / "trainer",
        bundles=signing_settings(tmp_path),
        data=PeerSettings(target=data_harness.server.address, token=SecretStr(TOKEN)),
        jobs=TrainerJobSettings(runner_id="trainer-test"),
    )
    service = TrainerService.open(settings)
    service.start()
    server = create_server(settings.server, [trainer_service_def(service)])
    await server.start()
    channel: aio.Channel = connect(ClientSettings(target=server.address, token=TOKEN))
    try:
        yield TrainerHarness(server, service, pb_grpc.TrainerServiceStub(channel), data_harness)
    finally:
        await channel.close()
        await server.stop(0)

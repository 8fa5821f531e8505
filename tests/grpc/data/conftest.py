"""A real data service (SQLite, LMDB, SeaweedFS) on port 0, and a client channel to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio

from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas_core.config import AuthSettings, DatabaseSettings, S3Settings, ServerSettings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_data.config import DataSettings, IngestSettings
from atlas_data.native_reader import NativeReaderSettings
from atlas_data.online import OnlineStoreSettings
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs
from tests.support.online_reader import configured_binary

TOKEN = "data-test-token-0123"


def data_settings(tmp: Path, s3: S3Settings, db_url: str = "", **ingest: object) -> DataSettings:
    return DataSettings(
        server=ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"]})),
        s3=s3,
        database=DatabaseSettings(url=db_url or f"sqlite:///{tmp / 'data.db'}"),
        data_dir=tmp,
        online=OnlineStoreSettings(lmdb_path=tmp / "online.lmdb", lmdb_map_size_bytes=2 * 1024**3),
        ingest=IngestSettings(offline_flush_seconds=0.5, **ingest),  # type: ignore[arg-type]
        native_reader=NativeReaderSettings(binary=configured_binary()),
    )


@dataclass
class DataHarness:
    server: AtlasServer
    service: DataService
    channel: aio.Channel
    stub: pb_grpc.DataServiceStub
    settings: DataSettings


@asynccontextmanager
async def running_data_service(
    tmp_path: Path, s3_settings: S3Settings, db_url: str = ""
) -> AsyncIterator[DataHarness]:
    settings = data_settings(tmp_path, s3_settings, db_url)
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    channel = connect(ClientSettings(target=server.address, token=TOKEN))
    try:
        yield DataHarness(server, service, channel, pb_grpc.DataServiceStub(channel), settings)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def data_harness(
    tmp_path: Path, s3_settings: S3Settings, db_url: str
) -> AsyncIterator[DataHarness]:
    """Runs each test on SQLite and on PostgreSQL (when reachable) metadata."""
    async with running_data_service(tmp_path, s3_settings, db_url) as harness:
        yield harness

"""A real labeling service (SQLite, SeaweedFS) on port 0 and a client channel to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio

from atlas.labeling.v1 import labeling_service_pb2_grpc as pb_grpc
from atlas_core.config import AuthSettings, DatabaseSettings, S3Settings, ServerSettings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_labeling.config import JobSettings, LabelingSettings, PeerSettings
from atlas_labeling.service import LabelingService
from atlas_labeling.servicer import labeling_service_def

TOKEN = "labeling-test-token-0123"
OTHER_TOKEN = "labeling-test-token-4567"


def labeling_settings(
    tmp: Path,
    s3: S3Settings,
    db_url: str = "",
    data_target: str = "",
    data_token: str = "",
    serving_target: str = "",
    serving_token: str = "",
) -> LabelingSettings:
    return LabelingSettings(
        data=PeerSettings(target=data_target, token=data_token or None),
        serving=PeerSettings(target=serving_target, token=serving_token or None),
        server=ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"], OTHER_TOKEN: ["*"]})),
        s3=s3,
        data_dir=tmp,
        database=DatabaseSettings(url=db_url or f"sqlite:///{tmp / 'labeling.db'}"),
        jobs=JobSettings(max_concurrent=1, runner_id="labeling-grpc-test"),
    )


@dataclass
class LabelingHarness:
    server: AtlasServer
    service: LabelingService
    channel: aio.Channel
    stub: pb_grpc.LabelingServiceStub
    other: pb_grpc.LabelingServiceStub  # a second caller with its own token
    settings: LabelingSettings


@asynccontextmanager
async def running_labeling_service(
    tmp_path: Path,
    s3_settings: S3Settings,
    db_url: str = "",
    data_target: str = "",
    data_token: str = "",
    serving_target: str = "",
    serving_token: str = "",
) -> AsyncIterator[LabelingHarness]:
    settings = labeling_settings(
        tmp_path, s3_settings, db_url, data_target, data_token, serving_target, serving_token
    )
    service = LabelingService.open(settings)
    service.start()
    server = create_server(settings.server, [labeling_service_def(service)])
    await server.start()
    channel = connect(ClientSettings(target=server.address, token=TOKEN))
    other = connect(ClientSettings(target=server.address, token=OTHER_TOKEN))
    try:
        yield LabelingHarness(
            server,
            service,
            channel,
            pb_grpc.LabelingServiceStub(channel),
            pb_grpc.LabelingServiceStub(other),
            settings,
        )
    finally:
        await channel.close()
        await other.close()
        await server.stop(0)


@pytest.fixture
async def labeling(tmp_path: Path, s3_settings: S3Settings) -> AsyncIterator[LabelingHarness]:
    async with running_labeling_service(tmp_path, s3_settings) as harness:
        yield harness


@pytest.fixture
async def labeling_db(
    tmp_path: Path, s3_settings: S3Settings, db_url: str
) -> AsyncIterator[LabelingHarness]:
    """The service on SQLite and on PostgreSQL metadata (when reachable)."""
    async with running_labeling_service(tmp_path, s3_settings, db_url) as harness:
        yield harness

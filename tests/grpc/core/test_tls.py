"""TLS and mutual TLS from configured certificate paths."""

from __future__ import annotations

import shutil

import grpc
import pytest

from atlas_core.config import TlsSettings
from atlas_core.rpc import create_server
from tests.support.echo import Req, echo_service
from tests.support.tls import make_test_pki

from .conftest import channel_for, server_settings
from .test_server_factory import unary

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to mint certs"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


async def _call(server, **client_kw):
    async with channel_for(server, **client_kw) as ch:
        return await unary(ch, "GetEcho")(Req(), timeout=5)


async def test_tls_server_accepts_tls_client_and_rejects_plaintext(pki):
    tls = TlsSettings(cert_file=pki.server_cert, key_file=pki.server_key)
    server = create_server(server_settings(tls=tls), [echo_service()])
    await server.start()
    try:
        assert (await _call(server, ca_file=pki.ca_cert)).status == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(server)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_mtls_requires_a_client_certificate(pki):
    tls = TlsSettings(
        cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert
    )
    server = create_server(server_settings(tls=tls), [echo_service()])
    await server.start()
    try:
        ok = await _call(
            server, ca_file=pki.ca_cert, cert_file=pki.client_cert, key_file=pki.client_key
        )
        assert ok.status == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(server, ca_file=pki.ca_cert)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_tls_with_missing_key_file_is_a_config_error(tmp_path, pki):
    from atlas_core.errors import ConfigError

    tls = TlsSettings(cert_file=pki.server_cert, key_file=tmp_path / "missing.key")
    server = create_server(server_settings(tls=tls), [echo_service()])
    with pytest.raises(ConfigError, match="missing.key"):
        await server.start()

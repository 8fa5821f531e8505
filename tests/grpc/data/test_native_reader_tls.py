"""The native online reader under the data service's TLS settings: it serves TLS (mTLS with a
client CA) from the same files, so one ClientSettings reaches both endpoints; plaintext and
clients without a certificate from the CA are refused; token checks stay as they were."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc import aio

from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas.data.v1 import online_service_pb2 as online_pb
from atlas.data.v1 import online_service_pb2_grpc as online_grpc
from atlas_core.config import S3Settings, TlsSettings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs
from tests.grpc.data.conftest import TOKEN, data_settings
from tests.grpc.data.test_feature_store import put
from tests.grpc.data.test_native_reader import mixed_record, mixed_spec, request
from tests.support.online_reader import reader_binary
from tests.support.tls import TestPki as Pki
from tests.support.tls import make_test_pki

pytestmark = [
    pytest.mark.skipif(reader_binary() is None, reason="atlas-online-reader is not built"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to mint certs"),
]
NOW = time.time()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates from a CA the reader does not trust (a wrong client certificate)."""
    return make_test_pki(tmp_path_factory.mktemp("stranger"))


@asynccontextmanager
async def tls_data_service(
    tmp_path: Path, s3: S3Settings, tls: TlsSettings, client: ClientSettings
) -> AsyncIterator[tuple[DataService, AtlasServer, ClientSettings]]:
    """A data service with ``tls`` (its native reader serving it too), and ``client`` aimed
    at it (target and read_target set)."""
    base = data_settings(tmp_path, s3)
    settings = base.model_copy(update={"server": base.server.model_copy(update={"tls": tls})})
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    try:
        assert service.native_reader is not None, "TLS must keep reads on the native reader"
        client = client.model_copy(
            update={"target": server.address, "read_target": service.native_reader.address}
        )
        yield service, server, client
    finally:
        await server.stop(0)


@asynccontextmanager
async def tls_data_service_with_mix(
    tmp_path: Path, s3: S3Settings, tls: TlsSettings, client: ClientSettings
) -> AsyncIterator[tuple[DataService, AtlasServer, ClientSettings]]:
    """:func:`tls_data_service` holding 40 records of group "mix"."""
    async with tls_data_service(tmp_path, s3, tls, client) as (service, server, client):
        async with connect(client) as channel:
            stub = pb_grpc.DataServiceStub(channel)
            await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
            await put(stub, [mixed_record(k, NOW) for k in range(40)], name="mix")
        yield service, server, client


def read_through_reader(client: ClientSettings) -> list[bool]:
    """get_features through the reader (read_target); checks it equals the data service's
    answer and returns the found flags."""
    from atlas_core.clients import DataClient

    answers = []
    for read_target in (client.read_target, None):
        with DataClient(client.model_copy(update={"read_target": read_target})) as data:
            answers.append(data.get_features("mix", [3, 999, 7], ["b", "a", "vec"]))
    via_reader, via_service = answers
    np.testing.assert_array_equal(via_reader.float32, via_service.float32)  # NaN == NaN here
    assert not np.isnan(via_reader.float32[0]).any() and np.isnan(via_reader.float32[1]).all()
    assert via_reader.found.tolist() == via_service.found.tolist()
    return via_reader.found.tolist()


async def reader_call(address: str, credentials: grpc.ChannelCredentials | None, token: str):
    """One raw GetOnlineFeatures to the reader: plaintext when ``credentials`` is None."""
    channel = (
        aio.secure_channel(address, credentials)
        if credentials is not None
        else aio.insecure_channel(address)
    )
    async with channel:
        return await online_grpc.OnlineFeatureServiceStub(channel).GetOnlineFeatures(
            online_pb.GetOnlineFeaturesRequest(read=request("mix", [1])),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def credentials(ca: Path, cert: Path | None = None, key: Path | None = None):
    return grpc.ssl_channel_credentials(
        ca.read_bytes(),
        key.read_bytes() if key else None,
        cert.read_bytes() if cert else None,
    )


async def test_tls_reader_serves_tls_clients_and_refuses_plaintext(tmp_path, s3_settings, pki):
    tls = TlsSettings(cert_file=pki.server_cert, key_file=pki.server_key)
    client = ClientSettings(target="unset", token=TOKEN, ca_file=pki.ca_cert)
    async with tls_data_service_with_mix(tmp_path, s3_settings, tls, client) as (
        service,
        _,
        client,
    ):
        assert await asyncio.to_thread(read_through_reader, client) == [True, False, True]
        address = service.native_reader.address
        with pytest.raises(aio.AioRpcError) as err:
            await reader_call(address, None, TOKEN)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # Token checks are the reader's own, unchanged by TLS.
        with pytest.raises(aio.AioRpcError) as err:
            await reader_call(address, credentials(pki.ca_cert), "not-a-token")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "invalid bearer token"


async def test_mtls_reader_requires_a_client_certificate_from_its_ca(
    tmp_path, s3_settings, pki, stranger
):
    tls = TlsSettings(
        cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert
    )
    client = ClientSettings(
        target="unset",
        token=TOKEN,
        ca_file=pki.ca_cert,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    async with tls_data_service_with_mix(tmp_path, s3_settings, tls, client) as (
        service,
        _,
        client,
    ):
        assert await asyncio.to_thread(read_through_reader, client) == [True, False, True]
        address = service.native_reader.address
        got = await reader_call(
            address, credentials(pki.ca_cert, pki.client_cert, pki.client_key), TOKEN
        )
        assert list(got.features.found) == [True]
        refused = {
            "no client certificate": credentials(pki.ca_cert),
            "a certificate from another CA": credentials(
                pki.ca_cert, stranger.client_cert, stranger.client_key
            ),
        }
        for why, creds in refused.items():
            with pytest.raises(aio.AioRpcError) as err:
                await reader_call(address, creds, TOKEN)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, why
        with pytest.raises(aio.AioRpcError) as err:
            await reader_call(address, None, TOKEN)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_tls_key_other_users_can_read_is_refused(tmp_path, pki):
    """As for the service's own server: an exposed key stops the start, with the fix named."""
    from atlas_core.config import AuthSettings
    from atlas_core.errors import ConfigError
    from atlas_data.native_reader import NativeReader, NativeReaderSettings

    exposed = tmp_path / "server.key"
    exposed.write_bytes(pki.server_key.read_bytes())
    exposed.chmod(0o644)
    binary = reader_binary()
    assert binary is not None
    with pytest.raises(ConfigError, match="chmod 600") as err:
        NativeReader.start(
            binary,
            lmdb_path=tmp_path / "online.lmdb",
            settings=NativeReaderSettings(),
            auth=AuthSettings(enabled=False),
            tls=TlsSettings(cert_file=pki.server_cert, key_file=exposed),
            work_dir=tmp_path,
            max_entities=1000,
        )
    assert err.value.reason == "SECRETS_FILE_EXPOSED"


def test_a_certificate_that_is_not_pem_is_named(tmp_path, pki):
    """The reader's start-up error (which an explicitly enabled reader raises) names the file."""
    import lmdb

    from atlas_core.config import AuthSettings
    from atlas_core.errors import Unavailable
    from atlas_data.native_reader import NativeReader, NativeReaderSettings

    lmdb.open(str(tmp_path / "online.lmdb"), max_dbs=8).close()
    bad = tmp_path / "server.pem"
    bad.write_text("not a certificate\n")
    binary = reader_binary()
    assert binary is not None
    with pytest.raises(Unavailable, match=f"with TLS \\(is {bad} a PEM certificate chain"):
        NativeReader.start(
            binary,
            lmdb_path=tmp_path / "online.lmdb",
            settings=NativeReaderSettings(),
            auth=AuthSettings(enabled=False),
            tls=TlsSettings(cert_file=bad, key_file=pki.server_key),
            work_dir=tmp_path,
            max_entities=1000,
        )

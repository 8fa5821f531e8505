"""Serving's entity lookups read through the data service's native reader over mTLS: the
same ClientSettings (CA, client certificate) reach the data service and its reader."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pandas as pd
import pytest
from google.protobuf import duration_pb2
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings, TlsSettings
from atlas_core.rpc import ClientSettings
from tests.support.online_reader import reader_binary
from tests.support.tls import make_test_pki

from ..data.conftest import TOKEN as DATA_TOKEN
from ..data.test_native_reader_tls import tls_data_service
from .conftest import live, serving_settings, start_harness, stop_harness, write_model
from .test_lookup import _entity, _ingest_with

pytestmark = [
    pytest.mark.skipif(reader_binary() is None, reason="atlas-online-reader is not built"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to mint certs"),
]


@pytest.mark.slow
async def test_entity_lookups_read_through_the_mtls_reader(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    pki = make_test_pki(tmp_path)
    tls = TlsSettings(
        cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert
    )
    client = ClientSettings(
        target="unset",
        token=SecretStr(DATA_TOKEN),
        ca_file=pki.ca_cert,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    async with tls_data_service(tmp_path / "data", s3_settings, tls, client) as (
        service,
        _,
        client,
    ):
        await asyncio.to_thread(_ingest_with, client, features)
        settings = serving_settings(tmp_path, s3_settings, "").model_copy(update={"data": client})
        h = await start_harness(settings)
        try:
            await h.register("bc", write_model(s3_settings, "models/bc/v1.tar"))
            lookup = pb.FeatureLookup(
                feature_groups=[common_pb2.FeatureGroupRef(name="patients")],
                fallback=pb.FALLBACK_POLICY_FAIL,
                # The first lookup also makes the mTLS handshake, on a busy test host.
                timeout=duration_pb2.Duration(seconds=5),
            )
            await h.stub.CreateEndpoint(
                pb.CreateEndpointRequest(
                    spec=pb.EndpointSpec(
                        name="bc", variants=[live("blue", "bc", 1)], feature_lookup=lookup
                    )
                )
            )
            got = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(3)))
            assert not got.prediction.fallback_used
            # The lookups went to the reader: with it stopped (the data service still up),
            # they fail.
            service.native_reader.stop()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(4)))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await stop_harness(h)

"""Serving registers only bundles signed by a key it trusts (FAILED_PRECONDITION otherwise)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from atlas_core.bundle_signing import BundleSigner
from atlas_core.config import S3Settings
from atlas_core.rpc import error_from_rpc

from .conftest import serving_settings, start_harness, stop_harness, write_model


async def test_register_refuses_unsigned_and_foreign_bundles(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    foreign = BundleSigner(Ed25519PrivateKey.generate())
    h = await start_harness(serving_settings(tmp_path, s3_settings, ""))
    try:
        for key, signer, reason in (
            ("models/unsigned/v1.tar", None, "BUNDLE_UNSIGNED"),
            ("models/foreign/v1.tar", foreign, "BUNDLE_SIGNER_UNTRUSTED"),
        ):
            ref = write_model(s3_settings, key, trees=2, signer=signer)
            with pytest.raises(grpc.RpcError) as err:
                await h.register("m", ref)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_from_rpc(err.value).reason == reason
            assert key in (err.value.details() or "")
        version = await h.register("m", write_model(s3_settings, "models/ok/v1.tar", trees=2))
        assert version.ref.version == 1  # the refused ones left nothing behind
    finally:
        await stop_harness(h)

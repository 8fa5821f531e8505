"""The bundle signing key of the tests: what the suite's local keypair is in production.

Fixed bytes, so bundles written in one process are trusted by servers started in another.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from atlas_core.bundle_signing import BundleSigner, BundleTrust, public_pem
from atlas_core.config import BundleSettings
from atlas_core.secret_files import write_private

TEST_SIGNER = BundleSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
TEST_TRUST = BundleTrust([TEST_SIGNER.public_key])


def signing_settings(directory: Path) -> BundleSettings:
    """Settings that sign with and trust the test key (its files written into ``directory``)."""
    private = directory / "test-bundle-signing.key"
    public = directory / "test-bundle-signing.pub"
    write_private(
        private,
        TEST_SIGNER.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
    )
    public.write_bytes(public_pem(TEST_SIGNER.public_key))
    return BundleSettings(signing_key_file=private, trusted_keys=[public])

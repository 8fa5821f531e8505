"""Signed bundles: only bundles signed by a trusted key are unpickled.

Every refusal is checked against a bundle whose model member, when unpickled, creates a marker
file: the marker must not exist afterwards, so the refusal came before any unpickling. The
control case (``allow_unsigned``) shows the marker does appear when such a bundle is loaded.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from atlas_core.bundle_signing import (
    BundleSigner,
    BundleTrust,
    bundle_signer,
    bundle_trust,
    ensure_local_keypair,
)
from atlas_core.bundles import (
    CHECKSUM_REASON,
    MANIFEST_NAME,
    MODEL_MEMBER,
    SIGNATURE_NAME,
    load_bundle,
    write_bundle,
)
from atlas_core.config import BundleSettings
from atlas_core.errors import ConfigError, DataLoss, FailedPrecondition
from atlas_core.storage import LocalArtifactStore
from tests.support.signing import TEST_SIGNER, TEST_TRUST

OTHER_SIGNER = BundleSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))


class _CreatesMarker:
    """Unpickling this opens (creates) the marker file: code running at load time."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a genuine bundle signed with the test key."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    model = LogisticRegression(max_iter=200).fit(X, y)
    store = LocalArtifactStore(tmp_path_factory.mktemp("genuine"))
    ref = write_bundle(
        store,
        "genuine.tar",
        model=model,
        task="binary",
        target="target",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={"auc": 0.9},
        lineage={"job_id": "j"},
        signer=TEST_SIGNER,
    )
    return store.get_bytes(ref)


def _members(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as archive:
        return {
            info.name: archive.extractfile(info).read()  # type: ignore[union-attr]
            for info in archive.getmembers()
        }


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _hostile(
    bundle: bytes, marker: Path, *, signer: BundleSigner | None, resign: bool = True
) -> bytes:
    """The genuine bundle with its model replaced by the marker pickle and the manifest's
    digest updated to match; signed by ``signer`` (or left unsigned), or with ``resign``
    false keeping the genuine signature over the old manifest."""
    import hashlib
    import pickle

    members = _members(bundle)
    payload = pickle.dumps(_CreatesMarker(marker))
    manifest = json.loads(members.pop(MANIFEST_NAME))
    manifest["members"][MODEL_MEMBER] = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    genuine_signature = members.pop(SIGNATURE_NAME)
    members[MODEL_MEMBER] = payload
    head = {MANIFEST_NAME: raw}
    if not resign:
        head[SIGNATURE_NAME] = genuine_signature
    elif signer is not None:
        head[SIGNATURE_NAME] = signer.sign(raw)
    return _tar({**head, **members})


def _refused(store: LocalArtifactStore, key: str, trust: BundleTrust = TEST_TRUST) -> str:
    with pytest.raises(FailedPrecondition) as err:
        load_bundle(store, key, trust=trust)
    assert err.value.metadata["key"] == key
    assert key in err.value.message and "refused" in err.value.message
    return err.value.reason


def test_a_signed_bundle_loads_and_names_its_signer(
    store: LocalArtifactStore, signed_bundle: bytes
) -> None:
    store.put_bytes("ok.tar", signed_bundle)
    members = _members(signed_bundle)
    assert list(members)[:2] == [MANIFEST_NAME, SIGNATURE_NAME]
    assert json.loads(members[SIGNATURE_NAME])["key_id"] == TEST_SIGNER.key_id
    bundle = load_bundle(store, "ok.tar", trust=TEST_TRUST)
    X = load_breast_cancer(as_frame=True).data.iloc[:3, :4]
    assert bundle.predictor.predict_proba(X).shape == (3, 2)


def test_an_unsigned_bundle_is_refused_before_unpickling(
    store: LocalArtifactStore, signed_bundle: bytes, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    store.put_bytes("unsigned.tar", _hostile(signed_bundle, marker, signer=None))
    assert _refused(store, "unsigned.tar") == "BUNDLE_UNSIGNED"
    assert not marker.exists()


def test_a_bundle_signed_by_an_untrusted_key_is_refused_before_unpickling(
    store: LocalArtifactStore, signed_bundle: bytes, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    store.put_bytes("foreign.tar", _hostile(signed_bundle, marker, signer=OTHER_SIGNER))
    assert _refused(store, "foreign.tar") == "BUNDLE_SIGNER_UNTRUSTED"
    with pytest.raises(FailedPrecondition) as err:
        load_bundle(store, "foreign.tar", trust=TEST_TRUST)
    assert err.value.metadata["key_id"] == OTHER_SIGNER.key_id
    assert not marker.exists()
    # The genuine bundle is refused too by a loader that trusts only the other key.
    store.put_bytes("genuine.tar", signed_bundle)
    assert _refused(store, "genuine.tar", BundleTrust([OTHER_SIGNER.public_key])) == (
        "BUNDLE_SIGNER_UNTRUSTED"
    )


def test_a_tampered_manifest_is_refused_before_unpickling(
    store: LocalArtifactStore, signed_bundle: bytes, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    # The attacker fixes the digest in the manifest but cannot re-sign it.
    store.put_bytes("edited.tar", _hostile(signed_bundle, marker, signer=None, resign=False))
    assert _refused(store, "edited.tar") == "BUNDLE_SIGNATURE_INVALID"
    assert not marker.exists()
    members = _members(signed_bundle)
    members[SIGNATURE_NAME] = b"{not json"
    store.put_bytes("garbled.tar", _tar(members))
    assert _refused(store, "garbled.tar") == "BUNDLE_SIGNATURE_INVALID"


def test_a_tampered_member_under_a_valid_signature_is_refused_before_unpickling(
    store: LocalArtifactStore, signed_bundle: bytes, tmp_path: Path
) -> None:
    import pickle

    marker = tmp_path / "pwned"
    members = _members(signed_bundle)
    members[MODEL_MEMBER] = pickle.dumps(_CreatesMarker(marker))  # manifest + signature kept
    store.put_bytes("swapped.tar", _tar(members))
    with pytest.raises(DataLoss) as err:
        load_bundle(store, "swapped.tar", trust=TEST_TRUST)
    assert err.value.reason == CHECKSUM_REASON
    assert err.value.metadata["member"] == MODEL_MEMBER
    assert not marker.exists()


def test_the_signature_is_checked_even_without_checksum_verification(
    store: LocalArtifactStore, signed_bundle: bytes, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    store.put_bytes("unsigned.tar", _hostile(signed_bundle, marker, signer=None))
    with pytest.raises(FailedPrecondition):
        load_bundle(store, "unsigned.tar", trust=TEST_TRUST, verify=False)
    assert not marker.exists()


def test_allow_unsigned_loads_with_a_warning_at_every_load(
    store: LocalArtifactStore,
    signed_bundle: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lenient = BundleTrust([TEST_SIGNER.public_key], allow_unsigned=True)
    members = _members(signed_bundle)
    del members[SIGNATURE_NAME]
    store.put_bytes("unsigned.tar", _tar(members))
    store.put_bytes("signed.tar", signed_bundle)
    with caplog.at_level(logging.WARNING, logger="atlas.bundles"):
        for _ in range(2):
            load_bundle(store, "unsigned.tar", trust=lenient)
        load_bundle(store, "signed.tar", trust=lenient)
    warnings = [r for r in caplog.records if "allow_unsigned" in r.getMessage()]
    assert len(warnings) == 3
    assert "not signed" in warnings[0].signature  # type: ignore[attr-defined]
    assert warnings[2].signature == "its signature is trusted"  # type: ignore[attr-defined]
    # The control: a lenient loader does unpickle a hostile bundle, which is the risk.
    marker = tmp_path / "pwned"
    store.put_bytes("hostile.tar", _hostile(signed_bundle, marker, signer=None))
    load_bundle(store, "hostile.tar", trust=lenient)
    assert marker.exists()


def test_the_local_keypair_is_generated_once_owner_only(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    private, public = ensure_local_keypair(secrets)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    first = private.read_bytes()
    assert ensure_local_keypair(secrets) == (private, public)
    assert private.read_bytes() == first
    signer = bundle_signer(BundleSettings(), tmp_path)
    trust = bundle_trust(BundleSettings(), tmp_path)
    assert trust.key_ids == {signer.key_id}
    assert not trust.allow_unsigned


def test_bad_key_settings_are_config_errors(tmp_path: Path) -> None:
    private, public = ensure_local_keypair(tmp_path / "secrets")
    os.chmod(private, 0o644)
    with pytest.raises(ConfigError) as err:
        bundle_signer(BundleSettings(signing_key_file=private), tmp_path)
    assert err.value.reason == "SECRETS_FILE_EXPOSED"
    assert "chmod 600" in err.value.message
    os.chmod(public, 0o600)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        bundle_signer(BundleSettings(signing_key_file=public), tmp_path)
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="trusted_keys entry .* not a PEM public key"):
        bundle_trust(BundleSettings(trusted_keys=[junk]), tmp_path)
    with pytest.raises(ConfigError, match="cannot read bundles.trusted_keys entry"):
        bundle_trust(BundleSettings(trusted_keys=[tmp_path / "absent.pub"]), tmp_path)

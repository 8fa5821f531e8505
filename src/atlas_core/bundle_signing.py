"""Ed25519 signatures over model bundle manifests: who made a bundle, not only that it is
intact. Apart from atlas_core.bundles (pandas, joblib) so services can build their keys at
start without importing it.

A signed bundle holds ``signature.json`` right after ``manifest.json``: the Ed25519 signature
of the manifest's exact bytes and the id of the key that made it. The manifest records the
sha256 of every other member, so one signature covers the whole bundle. A loader checks the
signature against the keys it trusts before it reads any further member, so an unsigned or
foreign bundle is refused before anything in it is unpickled (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from atlas_core.config import BundleSettings
from atlas_core.errors import ConfigError, FailedPrecondition
from atlas_core.secret_files import read_private, write_private

log = logging.getLogger("atlas.bundles")

SIGNATURE_NAME = "signature.json"
ALGORITHM = "ed25519"
LOCAL_KEY_NAME = "bundle-signing.key"
LOCAL_PUBLIC_KEY_NAME = "bundle-signing.pub"


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short public name of a key: the first 16 hex digits of its raw bytes' sha256."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class BundleSigner:
    """Signs manifests with one Ed25519 private key."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> BundleSigner:
        """Load a PEM Ed25519 private key (``openssl genpkey -algorithm ed25519``).

        Raises:
            ConfigError: unreadable, readable by other users, or not an Ed25519 key.
        """
        data = read_private(path, "bundles.signing_key_file")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"bundles.signing_key_file {path} is not an unencrypted PEM private key ({exc})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(
                f"bundles.signing_key_file {path} holds a {type(key).__name__}; "
                "bundles are signed with Ed25519 (openssl genpkey -algorithm ed25519)"
            )
        return cls(key)

    def sign(self, manifest: bytes) -> bytes:
        """The ``signature.json`` member for the manifest bytes ``manifest``."""
        signature = base64.b64encode(self.private_key.sign(manifest)).decode()
        record = {"algorithm": ALGORITHM, "key_id": self.key_id, "signature": signature}
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


class BundleTrust:
    """The public keys a loader accepts bundles from, and whether it tolerates others."""

    def __init__(self, keys: Iterable[Ed25519PublicKey], *, allow_unsigned: bool = False) -> None:
        self._keys = {key_id(key): key for key in keys}
        self.allow_unsigned = allow_unsigned

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @classmethod
    def from_files(cls, paths: Iterable[Path], *, allow_unsigned: bool = False) -> BundleTrust:
        """Trust the PEM public keys in ``paths``.

        Raises:
            ConfigError: a file is unreadable or holds no Ed25519 public key.
        """
        keys = []
        for path in paths:
            try:
                key = serialization.load_pem_public_key(Path(path).read_bytes())
            except OSError as exc:
                raise ConfigError(
                    f"cannot read bundles.trusted_keys entry {path}: {exc.strerror}"
                ) from None
            except ValueError as exc:
                raise ConfigError(
                    f"bundles.trusted_keys entry {path} is not a PEM public key ({exc})"
                ) from None
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigError(
                    f"bundles.trusted_keys entry {path} holds a {type(key).__name__}, "
                    "not an Ed25519 public key"
                )
            keys.append(key)
        return cls(keys, allow_unsigned=allow_unsigned)

    def check(self, manifest: bytes, signature: bytes | None, *, key: str) -> None:
        """Accept the manifest bytes of the bundle at ``key`` or raise.

        With ``allow_unsigned`` nothing is raised; a warning is logged at every call, saying
        whether this bundle's signature would have been accepted.

        Raises:
            FailedPrecondition: ``BUNDLE_UNSIGNED`` (no signature), ``BUNDLE_SIGNER_UNTRUSTED``
                (signed by a key not in the trusted set), ``BUNDLE_SIGNATURE_INVALID`` (the
                signature does not verify: the manifest was changed after signing).
        """
        problem = self._problem(manifest, signature, key)
        if self.allow_unsigned:
            verdict = problem.message if problem is not None else "its signature is trusted"
            log.warning(
                "loading model bundles with bundles.allow_unsigned set (development only)",
                extra={"key": key, "signature": verdict},
            )
            return
        if problem is not None:
            raise problem

    def _problem(
        self, manifest: bytes, signature: bytes | None, key: str
    ) -> FailedPrecondition | None:
        if signature is None:
            return _refused(
                key,
                reason="BUNDLE_UNSIGNED",
                why="it is not signed; publish it through a producer that signs bundles "
                "(bundles.signing_key_file)",
            )
        try:
            record = json.loads(signature.decode())
            signer_id = str(record["key_id"])
            raw = base64.b64decode(record["signature"], validate=True)
            if record.get("algorithm") != ALGORITHM:
                raise ValueError(f"unsupported algorithm {record.get('algorithm')!r}")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            return _refused(
                key,
                reason="BUNDLE_SIGNATURE_INVALID",
                why=f"its {SIGNATURE_NAME} is unreadable ({exc})",
            )
        public_key = self._keys.get(signer_id)
        if public_key is None:
            return _refused(
                key,
                reason="BUNDLE_SIGNER_UNTRUSTED",
                why=f"it is signed by key {signer_id}, which is not in bundles.trusted_keys",
                signer=signer_id,
            )
        try:
            public_key.verify(raw, manifest)
        except InvalidSignature:
            return _refused(
                key,
                reason="BUNDLE_SIGNATURE_INVALID",
                why=f"its manifest does not match the signature of key {signer_id} "
                "(changed after signing)",
                signer=signer_id,
            )
        return None


def _refused(key: str, *, reason: str, why: str, signer: str = "") -> FailedPrecondition:
    metadata = {"key": key, **({"key_id": signer} if signer else {})}
    return FailedPrecondition(
        f"model bundle '{key}' was refused: {why}", reason=reason, metadata=metadata
    )


def ensure_local_keypair(secrets_dir: Path) -> tuple[Path, Path]:
    """(private, public) key files of the suite's local signing key, generated once.

    The private key is owner-only. Concurrent first starts agree on one key: each writes its
    candidate aside and links it into place; the loser adopts the winner's.
    """
    private_path = secrets_dir / LOCAL_KEY_NAME
    public_path = secrets_dir / LOCAL_PUBLIC_KEY_NAME
    if not private_path.exists():
        candidate = secrets_dir / f".{LOCAL_KEY_NAME}.{os.getpid()}"
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(candidate, pem)
        try:
            os.link(candidate, private_path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    if not public_path.exists():
        signer = BundleSigner.from_file(private_path)
        staged = secrets_dir / f".{LOCAL_PUBLIC_KEY_NAME}.{os.getpid()}"
        staged.write_bytes(public_pem(signer.public_key))
        os.replace(staged, public_path)
    return private_path, public_path


def bundle_signer(settings: BundleSettings, data_dir: Path) -> BundleSigner:
    """The signer a bundle producer uses: ``signing_key_file``, else the local keypair."""
    path = settings.signing_key_file
    if path is None:
        path, _ = ensure_local_keypair(Path(data_dir) / "secrets")
    return BundleSigner.from_file(path)


def bundle_trust(settings: BundleSettings, data_dir: Path) -> BundleTrust:
    """The keys a bundle loader trusts: ``trusted_keys``, else the local keypair's."""
    paths = list(settings.trusted_keys)
    if not paths:
        paths = [ensure_local_keypair(Path(data_dir) / "secrets")[1]]
    return BundleTrust.from_files(paths, allow_unsigned=settings.allow_unsigned)

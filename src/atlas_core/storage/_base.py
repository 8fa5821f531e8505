"""The artifact store contract shared by every backend."""

from __future__ import annotations

import abc
import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import BinaryIO

from atlas_core.errors import DataLoss, InvalidArgument, NotFound

DEFAULT_CHUNK_SIZE = 1024 * 1024
STAGING_PREFIX = "_staging/"
MAX_KEY_LENGTH = 1024
_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RESERVED_METADATA_PREFIX = "atlas-"


@dataclass(frozen=True)
class ArtifactRef:
    """A published artifact, passed between services by reference.

    Two refs are equal when they name the same bytes at the same place (``uri``, ``sha256``,
    ``size``); ``metadata`` (the user metadata given at put) does not take part.
    """

    uri: str
    key: str
    sha256: str
    size: int
    metadata: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )


KeyOrRef = str | ArtifactRef


class ArtifactStore(abc.ABC):
    """Immutable-blob storage with integrity: every object records its sha256 and size.

    Contract (every backend, checked by one shared test suite):

    * Thread-safety: one instance may be shared by any number of threads; every method may be
      called concurrently, including for the same key.
    * Atomic publish: a reader never sees a partially written object, nor one without its
      checksum. Concurrent writers to one key leave exactly one writer's complete bytes with
      that writer's checksum (last writer wins).
    * Integrity: reads with ``verify=True`` hash what they return and compare sha256 and size
      with what was recorded at put. Passing an :class:`ArtifactRef` instead of a key also
      checks that the key still holds that artifact (always, even with ``verify=False``).
    * Keys are ``/``-separated relative paths: 1-1024 characters, no empty, ``.`` or ``..``
      segments, no leading ``/``, no backslash or control characters, and not under the
      reserved ``_staging/`` prefix. User metadata keys are lowercase ``[a-z0-9_-]`` (max 64),
      not starting with ``atlas-``; values are printable ASCII.

    Errors (from :mod:`atlas_core.errors`), for every method unless stated otherwise:

    * ``InvalidArgument`` -- malformed key or metadata.
    * ``NotFound`` -- reads, ``stat`` and ``download_to_file`` of a missing key; the message
      names the key.
    * ``DataLoss`` -- stored bytes do not match the recorded sha256/size (reason
      ``CHECKSUM_MISMATCH`` or ``SIZE_MISMATCH``), the object has no recorded checksum
      (``CHECKSUM_MISSING``), or the key no longer holds the ref's artifact
      (``ARTIFACT_REPLACED``); the message names the key, expected and actual values.
    * ``Unauthenticated`` / ``PermissionDenied`` -- the backend refused the credentials.
    * ``Unavailable`` -- the backend could not be reached; the message names it.
    """

    # -- abstract: what a backend must provide ---------------------------------------------

    @abc.abstractmethod
    def put_stream(
        self, key: str, stream: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ArtifactRef:
        """Publish everything ``stream.read()`` yields (length unknown) under ``key``.

        Memory stays bounded (about one upload part) whatever the length. Replaces any
        existing object atomically.

        Returns:
            The ref of the published bytes.
        Raises:
            InvalidArgument, Unauthenticated, PermissionDenied, Unavailable.
        """

    @abc.abstractmethod
    def open_stream(
        self, key: KeyOrRef, *, verify: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ArtifactStream:
        """Open the object for chunked reading; use as a context manager and iterate.

        All chunks come from one version of the object even if it is replaced meanwhile.
        With ``verify``, the sha256/size check runs when the last chunk has been read:
        treat the data as untrusted until iteration ends without ``DataLoss``.

        Raises:
            NotFound (at open), DataLoss (at open for ``ARTIFACT_REPLACED`` or
            ``CHECKSUM_MISSING``, at end of iteration for mismatches), and the common errors.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> ArtifactRef:
        """The ref (with user metadata) recorded for ``key``; no data is read.

        Raises:
            NotFound, DataLoss (``CHECKSUM_MISSING``), and the common errors.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ArtifactRef]:
        """Refs of every artifact whose key starts with ``prefix``, in key order.

        Objects not written through an artifact store (no recorded checksum) and staging
        objects are skipped. Objects deleted while listing are skipped.
        """

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """The URI a ref for ``key`` carries (e.g. ``s3://bucket/key``); no I/O."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``. Idempotent: deleting a missing key is not an error."""

    # -- concrete: built on the primitives above ---------------------------------------------

    def key_for_uri(self, uri: str) -> str:
        """The key of ``uri`` in this store (``s3://bucket/key`` or a bare key).

        Raises:
            InvalidArgument: ``uri`` points into another store or bucket.
        """
        prefix = self.uri("")
        if uri.startswith(prefix):
            return uri[len(prefix) :]
        if "://" in uri:
            raise InvalidArgument(
                f"artifact {uri} is not in this store ({prefix}...)", reason="FOREIGN_ARTIFACT"
            )
        return uri

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""
        try:
            self.stat(key)
        except NotFound:
            return False
        except DataLoss:
            return True
        return True

    def put_bytes(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> ArtifactRef:
        """Publish ``data`` under ``key`` (see :meth:`put_stream`)."""
        return self.put_stream(key, io.BytesIO(data), metadata)

    def put_file(
        self, key: str, path: Path | str, metadata: Mapping[str, str] | None = None
    ) -> ArtifactRef:
        """Publish the file at ``path`` under ``key``, streaming it (see :meth:`put_stream`)."""
        with open(path, "rb") as handle:
            return self.put_stream(key, handle, metadata)

    def get_bytes(self, key: KeyOrRef, *, verify: bool = True) -> bytes:
        """The object's bytes, verified against the recorded sha256/size when ``verify``."""
        with self.open_stream(key, verify=verify) as stream:
            return b"".join(stream)

    def download_to_file(
        self, key: KeyOrRef, path: Path | str, *, verify: bool = True
    ) -> ArtifactRef:
        """Stream the object into ``path`` (replacing it) and return its ref.

        Chunks go to a temporary file beside ``path`` that is renamed over it only after
        verification, so on any error ``path`` is left untouched and no partial file remains.
        """
        target = Path(path)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with self.open_stream(key, verify=verify) as stream, partial.open("wb") as out:
                for chunk in stream:
                    out.write(chunk)
                ref = stream.ref
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return ref


class ArtifactStream:
    """Chunks of one stored object; verifies sha256/size after the last chunk.

    Backends build it from the ref recorded at put (``recorded``) and a chunk iterator over the
    object's actual bytes. Not thread-safe: one consumer iterates it.
    """

    def __init__(
        self,
        recorded: ArtifactRef,
        chunks: Iterable[bytes],
        *,
        verify: bool,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.ref = recorded
        self._chunks = iter(chunks)
        self._verify = verify
        self._close = close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self._chunks:
                if self._verify:
                    digest.update(chunk)
                size += len(chunk)
                yield chunk
        finally:
            self.close()
        if self._verify:
            check_integrity(self.ref, digest.hexdigest(), size)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> ArtifactStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class HashingReader(io.RawIOBase):
    """Wraps a binary stream, hashing and counting every byte read through it."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self._digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, short only at end of stream (callers get whole parts)."""
        if size is None or size < 0:
            return self._take(self._inner.read())
        buffer = bytearray()
        while len(buffer) < size:
            data = self._take(self._inner.read(size - len(buffer)))
            if not data:
                break
            if not buffer and len(data) == size:
                return data  # the common one-read case: no copy
            buffer += data
        return bytes(buffer)

    def _take(self, data: object) -> bytes:
        if data is None:  # a non-blocking inner stream with nothing available
            return b""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument(
                f"put_stream needs a binary stream; read() returned {type(data).__name__}"
            )
        data = bytes(data)
        self._digest.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's Buffer
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def check_integrity(recorded: ArtifactRef, actual_sha256: str, actual_size: int) -> None:
    """Raise DataLoss when the bytes read differ from what was recorded at put."""
    if actual_size != recorded.size:
        raise DataLoss(
            f"artifact '{recorded.key}' is corrupt: recorded size {recorded.size} bytes, "
            f"read {actual_size} bytes",
            reason="SIZE_MISMATCH",
            metadata={
                "key": recorded.key,
                "expected": str(recorded.size),
                "actual": str(actual_size),
            },
        )
    if actual_sha256 != recorded.sha256:
        raise DataLoss(
            f"artifact '{recorded.key}' is corrupt: recorded sha256 {recorded.sha256}, "
            f"read sha256 {actual_sha256}",
            reason="CHECKSUM_MISMATCH",
            metadata={"key": recorded.key, "expected": recorded.sha256, "actual": actual_sha256},
        )


def check_expected(requested: KeyOrRef, recorded: ArtifactRef) -> None:
    """When a ref was requested, the key must still hold that artifact."""
    if isinstance(requested, ArtifactRef) and (
        requested.sha256 != recorded.sha256 or requested.size != recorded.size
    ):
        raise DataLoss(
            f"artifact '{recorded.key}' no longer holds the requested bytes: expected sha256 "
            f"{requested.sha256} ({requested.size} bytes), the key now holds sha256 "
            f"{recorded.sha256} ({recorded.size} bytes)",
            reason="ARTIFACT_REPLACED",
            metadata={"key": recorded.key, "expected": requested.sha256, "actual": recorded.sha256},
        )


def key_of(key: KeyOrRef) -> str:
    return validate_key(key.key if isinstance(key, ArtifactRef) else key)


def validate_key(key: str) -> str:
    """Return ``key`` if it satisfies the key rules in :class:`ArtifactStore`, else raise."""
    problem = _key_problem(key)
    if problem:
        raise InvalidArgument(f"invalid artifact key {key!r}: {problem}", reason="INVALID_KEY")
    return key


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    if len(key) > MAX_KEY_LENGTH:
        return f"longer than {MAX_KEY_LENGTH} characters"
    if key.startswith("/") or key.endswith("/"):
        return "must not start or end with '/'"
    if "\\" in key or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "must not contain backslashes or control characters"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "must not contain empty, '.' or '..' path segments"
    if key.startswith(STAGING_PREFIX):
        return f"the prefix {STAGING_PREFIX!r} is reserved for uploads in progress"
    return None


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Normalised copy of user metadata, or InvalidArgument naming the offending entry."""
    clean: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not _METADATA_KEY.match(name):
            raise InvalidArgument(
                f"invalid metadata key {name!r}: use 1-64 lowercase letters, digits, '-' or '_'",
                reason="INVALID_METADATA",
            )
        if name.startswith(RESERVED_METADATA_PREFIX):
            raise InvalidArgument(
                f"metadata key {name!r} is reserved (prefix {RESERVED_METADATA_PREFIX!r})",
                reason="INVALID_METADATA",
            )
        if not isinstance(value, str) or not all(32 <= ord(ch) < 127 for ch in value):
            raise InvalidArgument(
                f"metadata value for {name!r} must be printable ASCII text",
                reason="INVALID_METADATA",
            )
        clean[name] = value
    return clean


def frozen(metadata: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(metadata))

"""Artifact store in a local directory -- for unit tests only, never for services.

Each object is one file, ``objects/<hh>/<sha256 of key>``, holding the payload followed by a
JSON trailer (key, sha256, size, user metadata), the trailer's length (8 bytes, big-endian) and
a magic marker. Writers build the whole file under ``staging/`` while hashing and publish it
with one ``os.replace``, so data and checksum change together atomically. A reader keeps its
file descriptor, so it reads one version even if the key is replaced meanwhile. File names are
hashes of the key, so no key can escape the root.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from atlas_core.errors import DataLoss, NotFound
from atlas_core.storage._base import (
    DEFAULT_CHUNK_SIZE,
    ArtifactRef,
    ArtifactStore,
    ArtifactStream,
    HashingReader,
    KeyOrRef,
    check_expected,
    frozen,
    key_of,
    validate_key,
    validate_metadata,
)

_MAGIC = b"ATLASART"
_FOOTER = 16  # trailer length (8) + magic (8)
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalStoreSettings:
    """Selects :class:`LocalArtifactStore` in :func:`atlas_core.storage.open_artifact_store`."""

    root: Path


class LocalArtifactStore(ArtifactStore):
    """:class:`ArtifactStore` in a directory. Thread- and process-safe on one filesystem."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self._objects = self.root / "objects"
        self._staging = self.root / "staging"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalArtifactStore(root={str(self.root)!r})"

    def uri(self, key: str) -> str:
        return f"local://{self.root.as_posix()}/{key}"

    def path_for(self, key: str) -> Path:
        """The file holding ``key`` (payload + trailer); tests use it to simulate corruption."""
        digest = hashlib.sha256(validate_key(key).encode()).hexdigest()
        return self._objects / digest[:2] / digest

    def put_stream(
        self, key: str, stream: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ArtifactRef:
        target = self.path_for(key)
        user_meta = validate_metadata(metadata)
        reader = HashingReader(stream)
        partial = self._staging / uuid.uuid4().hex
        try:
            with partial.open("wb") as out:
                while chunk := reader.read(_COPY_CHUNK):
                    out.write(chunk)
                trailer = json.dumps(
                    {
                        "key": key,
                        "sha256": reader.sha256,
                        "size": reader.size,
                        "metadata": user_meta,
                    }
                ).encode()
                out.write(trailer + len(trailer).to_bytes(8, "big") + _MAGIC)
            target.parent.mkdir(exist_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return ArtifactRef(self.uri(key), key, reader.sha256, reader.size, frozen(user_meta))

    def open_stream(
        self, key: KeyOrRef, *, verify: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ArtifactStream:
        name = key_of(key)
        handle = self._open(name)
        try:
            recorded, payload_size = self._read_trailer(name, handle)
            check_expected(key, recorded)
        except BaseException:
            handle.close()
            raise
        return ArtifactStream(
            recorded, _chunks(handle, payload_size, chunk_size), verify=verify, close=handle.close
        )

    def stat(self, key: str) -> ArtifactRef:
        with self._open(key) as handle:
            return self._read_trailer(key, handle)[0]

    def list(self, prefix: str = "") -> Iterator[ArtifactRef]:
        refs = []
        for path in self._objects.glob("*/*"):
            try:
                with path.open("rb") as handle:
                    ref, _ = self._read_trailer(path.name, handle)
            except (FileNotFoundError, DataLoss):
                continue
            if ref.key.startswith(prefix):
                refs.append(ref)
        yield from sorted(refs, key=lambda ref: ref.key)

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path_for(key).open("rb")
        except FileNotFoundError:
            raise NotFound(
                f"artifact '{key}' not found in {self.root}",
                reason="ARTIFACT_NOT_FOUND",
                metadata={"key": key},
            ) from None

    def _read_trailer(self, key: str, handle: BinaryIO) -> tuple[ArtifactRef, int]:
        """The recorded ref and the actual payload length of an open object file."""
        total = os.fstat(handle.fileno()).st_size
        try:
            handle.seek(total - _FOOTER)
            footer = handle.read(_FOOTER)
            trailer_len = int.from_bytes(footer[:8], "big")
            if footer[8:] != _MAGIC or trailer_len > total - _FOOTER:
                raise ValueError("no trailer")
            handle.seek(total - _FOOTER - trailer_len)
            trailer = json.loads(handle.read(trailer_len))
            ref = ArtifactRef(
                self.uri(trailer["key"]),
                trailer["key"],
                trailer["sha256"],
                int(trailer["size"]),
                frozen(trailer["metadata"]),
            )
        except (ValueError, KeyError, TypeError, OSError):
            raise DataLoss(
                f"artifact '{key}' has no readable sha256/size record",
                reason="CHECKSUM_MISSING",
                metadata={"key": key},
            ) from None
        handle.seek(0)
        return ref, total - _FOOTER - trailer_len


def _chunks(handle: BinaryIO, size: int, chunk_size: int) -> Iterator[bytes]:
    remaining = size
    while remaining > 0:
        chunk = handle.read(min(chunk_size, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        yield chunk

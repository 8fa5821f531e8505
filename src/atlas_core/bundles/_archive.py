"""The bundle container: an uncompressed POSIX tar with ``manifest.json`` first, then
``signature.json`` when signed, then the members the manifest lists.

Tar headers are normalised (mtime 0, uid/gid 0, no owner names, mode 0644, members sorted),
so equal inputs give equal bytes. Reading is a single streaming pass in the order trust is
established: the manifest's signature is checked before any other member is read, then every
member is read into memory and hashed; nothing is unpickled until every checksum has been
compared.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from atlas_core.bundle_signing import SIGNATURE_NAME, BundleTrust
from atlas_core.bundles._manifest import MANIFEST_NAME, parse_manifest
from atlas_core.errors import DataLoss

CHECKSUM_REASON = "BUNDLE_CHECKSUM_MISMATCH"
_COPY_CHUNK = 1024 * 1024
# The manifest and signature are read before anything is trusted: their tar headers' sizes are
# checked first, so a crafted bundle cannot make the reader buffer gigabytes.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_archive(
    target: Path, manifest: bytes, members: Mapping[str, Path], *, signature: bytes | None
) -> None:
    """Write ``manifest``, its ``signature`` (when given), then every member (sorted by name)
    into a tar at ``target``."""
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(_header(MANIFEST_NAME, len(manifest)), io.BytesIO(manifest))
        if signature is not None:
            archive.addfile(_header(SIGNATURE_NAME, len(signature)), io.BytesIO(signature))
        for name in sorted(members):
            path = members[name]
            with path.open("rb") as handle:
                archive.addfile(_header(name, path.stat().st_size), handle)


def _header(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def read_archive(
    stream: IO[bytes], *, key: str, verify: bool, trust: BundleTrust
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, member bytes by name) of the tar in ``stream``.

    The manifest must come first; ``trust`` checks its signature (the next member, when
    present) before any other member is read. With ``verify``, every member's sha256 and
    size must then equal the manifest's record, and the archive must hold exactly the
    members the manifest lists.

    Raises:
        FailedPrecondition: the signature is refused (see :meth:`BundleTrust.check`), or
            ``BUNDLE_FORMAT_UNSUPPORTED``.
        DataLoss: ``BUNDLE_MALFORMED`` (not a tar, no manifest first, unsafe member) or
            ``BUNDLE_CHECKSUM_MISMATCH`` (a member differs, is missing or unexpected).
    """
    raw_manifest = b""
    manifest: dict[str, Any] | None = None
    signature_checked = False
    contents: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                name = _safe_name(info, key)
                if manifest is None:
                    if name != MANIFEST_NAME:
                        raise _malformed(key, f"the first member is not {MANIFEST_NAME}")
                    _check_size(info, MAX_MANIFEST_BYTES, key)
                    raw_manifest = _read_member(archive, info)
                    # The format first: a newer one may sign differently ("upgrade", not
                    # "unsigned"). Parsing JSON runs no code from the bundle.
                    manifest = parse_manifest(raw_manifest, key=key)
                    continue
                if not signature_checked:
                    signed = name == SIGNATURE_NAME
                    if signed:
                        _check_size(info, MAX_SIGNATURE_BYTES, key)
                    trust.check(
                        raw_manifest, _read_member(archive, info) if signed else None, key=key
                    )
                    signature_checked = True
                    if signed:
                        continue
                if name in contents or name in (MANIFEST_NAME, SIGNATURE_NAME):
                    raise _malformed(key, f"member {name!r} appears twice")
                if verify:  # refused from its header, before its bytes are read
                    _check_listed(manifest["members"], info, key)
                data = _read_member(archive, info)
                contents[name] = data
                digests[name] = hashlib.sha256(data).hexdigest()
    except tarfile.TarError as err:
        raise _malformed(key, f"not a readable tar archive ({err})") from None
    if manifest is None:
        raise _malformed(key, f"no {MANIFEST_NAME}")
    if not signature_checked:  # a bundle of the manifest alone
        trust.check(raw_manifest, None, key=key)
    if verify:
        _check_members(manifest["members"], contents, digests, key)
    return manifest, contents


def _check_size(info: tarfile.TarInfo, limit: int, key: str) -> None:
    if info.size > limit:
        raise _malformed(key, f"member {info.name!r} is {info.size} bytes, over {limit}")


def _check_listed(recorded: Mapping[str, Any], info: tarfile.TarInfo, key: str) -> None:
    record = recorded.get(info.name)
    if record is None:
        raise _mismatch(key, info.name, f"member {info.name!r} is not listed in the manifest")
    if record.get("size") != info.size:
        raise _mismatch(
            key,
            info.name,
            f"member {info.name!r} is {info.size} bytes, the manifest records "
            f"{record.get('size')} bytes",
        )


def _read_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(info)
    return handle.read() if handle is not None else b""


def read_manifest_only(chunks: Iterable[bytes], *, key: str) -> dict[str, Any]:
    """The manifest from the leading chunks of a bundle, stopping after the first member."""
    reader = ChunkReader(iter(chunks))
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            info = archive.next()
            if info is None or info.name != MANIFEST_NAME:
                raise _malformed(key, f"the first member is not {MANIFEST_NAME}")
            handle = archive.extractfile(info)
            raw = handle.read() if handle is not None else b""
    except tarfile.TarError as err:
        raise _malformed(key, f"not a readable tar archive ({err})") from None
    return parse_manifest(raw, key=key)


def _check_members(
    recorded: Mapping[str, Mapping[str, Any]],
    contents: Mapping[str, bytes],
    digests: Mapping[str, str],
    key: str,
) -> None:
    for name, record in sorted(recorded.items()):
        if name not in contents:
            raise _mismatch(key, name, f"member {name!r} listed in the manifest is missing")
        actual_size = len(contents[name])
        if record.get("sha256") != digests[name] or record.get("size") != actual_size:
            raise _mismatch(
                key,
                name,
                f"member {name!r} has sha256 {digests[name]} ({actual_size} bytes), the "
                f"manifest records {record.get('sha256')} ({record.get('size')} bytes)",
                expected=str(record.get("sha256")),
                actual=digests[name],
            )
    unexpected = sorted(set(contents) - set(recorded))
    if unexpected:
        raise _mismatch(
            key, unexpected[0], f"members not listed in the manifest: {', '.join(unexpected)}"
        )


def _safe_name(info: tarfile.TarInfo, key: str) -> str:
    name = info.name
    if not info.isreg():
        raise _malformed(key, f"member {name!r} is not a regular file")
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise _malformed(key, f"member name {name!r} is not a safe relative path")
    return name


def _mismatch(key: str, member: str, why: str, *, expected: str = "", actual: str = "") -> DataLoss:
    return DataLoss(
        f"model bundle '{key}' failed verification: {why}; refusing to load it",
        reason=CHECKSUM_REASON,
        metadata={"key": key, "member": member, "expected": expected, "actual": actual},
    )


def _malformed(key: str, why: str) -> DataLoss:
    return DataLoss(
        f"model bundle '{key}' is malformed: {why}",
        reason="BUNDLE_MALFORMED",
        metadata={"key": key},
    )


class ChunkReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (for streaming tar reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's Buffer
        while not len(self._buffer) and not self._done:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                self._done = True
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]  # a view: no copy of the rest
        return count

    def drain(self) -> None:
        """Consume the rest of the chunks (lets a verifying iterator reach its check)."""
        self._buffer = memoryview(b"")
        for _ in self._chunks:
            pass
        self._done = True

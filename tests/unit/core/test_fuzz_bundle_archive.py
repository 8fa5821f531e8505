"""Fuzzing the bundle container reader (issue #33, capability 3): tar members with unsafe
names (zip-slip, absolute paths), links, devices, directories, oversized or unlisted members,
and random byte damage. Whatever the archive, ``read_archive`` either returns exactly the
members the signed manifest lists, under safe relative names, or refuses with DataLoss /
FailedPrecondition; it never raises anything else and never buffers a member it will refuse."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_core.bundle_signing import SIGNATURE_NAME
from atlas_core.bundles import _archive
from atlas_core.bundles._archive import read_archive
from atlas_core.bundles._manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME
from atlas_core.errors import DataLoss, FailedPrecondition
from tests.support.parser_fuzz import fuzz_settings
from tests.support.signing import TEST_SIGNER, TEST_TRUST

REFUSALS = (DataLoss, FailedPrecondition)
MEMBERS = {"model.pkl": b"not really a pickle", "stats.json": b"{}"}


def manifest_for(members: dict[str, bytes]) -> bytes:
    return json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": "binary",
            "input_schema": [],
            "model": {},
            "training_stats": {},
            "members": {
                name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                for name, data in members.items()
            },
        }
    ).encode()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **extra: Any):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for attr, value in extra.items():
        setattr(info, attr, value)
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def archive(entries: list[tuple[tarfile.TarInfo, io.BytesIO | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, data)
    return buf.getvalue()


def good_entries(members: dict[str, bytes] = MEMBERS) -> list:
    manifest = manifest_for(members)
    return [
        member(MANIFEST_NAME, manifest),
        member(SIGNATURE_NAME, TEST_SIGNER.sign(manifest)),
        *(member(name, data) for name, data in members.items()),
    ]


def read(raw: bytes) -> tuple[dict, dict[str, bytes]]:
    return read_archive(io.BytesIO(raw), key="fuzz/bundle.tar", verify=True, trust=TEST_TRUST)


def assert_safe(manifest: dict, contents: dict[str, bytes]) -> None:
    assert set(contents) == set(manifest["members"])
    for name, data in contents.items():
        assert not name.startswith("/") and ".." not in name.split("/")
        assert hashlib.sha256(data).hexdigest() == manifest["members"][name]["sha256"]


def test_a_good_archive_reads_back() -> None:
    manifest, contents = read(archive(good_entries()))
    assert contents == MEMBERS
    assert_safe(manifest, contents)


UNSAFE_NAMES = st.sampled_from(
    [
        "../evil.pkl",
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "./model.pkl",
        "model.pkl/",
        "a//b",
        "",
        ".",
        "..",
    ]
) | st.text(alphabet="./ab\\\x00", min_size=1, max_size=12)
LINK_KINDS = st.sampled_from(
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]
)


@fuzz_settings
@given(name=UNSAFE_NAMES, kind=LINK_KINDS, position=st.integers(0, 4), data=st.binary(max_size=64))
def test_unsafe_members_are_refused(name: str, kind: bytes, position: int, data: bytes) -> None:
    entries = good_entries()
    if kind == tarfile.REGTYPE or position % 2 == 0:  # an unsafe regular file
        entries.insert(min(position, len(entries)), member(name, data))
    else:  # a link/device/directory, even under a safe name
        target = name if position % 4 == 1 else "model.pkl"
        entries.insert(min(position, len(entries)), member(target, kind=kind, linkname=name))
    try:
        manifest, contents = read(archive(entries))
    except REFUSALS:
        return
    assert_safe(manifest, contents)


@fuzz_settings
@given(
    members=st.dictionaries(
        st.text(alphabet="abc./", min_size=1, max_size=8), st.binary(max_size=32), max_size=4
    ),
    extra=st.dictionaries(
        st.text(alphabet="abc./", min_size=1, max_size=8), st.binary(max_size=32), max_size=2
    ),
)
def test_only_listed_members_with_recorded_sizes_are_read(
    members: dict[str, bytes], extra: dict[str, bytes]
) -> None:
    entries = good_entries(members)
    entries += [member(name, data) for name, data in extra.items()]
    try:
        manifest, contents = read(archive(entries))
    except REFUSALS:
        return
    assert_safe(manifest, contents)
    assert contents == members


@fuzz_settings
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=8),
    cut=st.none() | st.integers(0, 10**9),
)
def test_damaged_bytes_are_refused_or_read_intact(
    flips: list[tuple[int, int]], cut: int | None
) -> None:
    raw = bytearray(archive(good_entries()))
    for offset, xor in flips:
        raw[offset % len(raw)] ^= xor
    if cut is not None:
        raw = raw[: cut % len(raw)]
    try:
        manifest, contents = read(bytes(raw))
    except REFUSALS:
        return
    assert_safe(manifest, contents)
    assert contents == MEMBERS  # whatever damage passed was outside the members' bytes


class CountingReader(io.RawIOBase):
    def __init__(self, raw: bytes) -> None:
        self.inner = io.BytesIO(raw)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.inner.readinto(buffer)
        self.read_bytes += n
        return n


@pytest.mark.parametrize("which", ["manifest", "signature", "unlisted", "size"])
def test_oversized_and_unlisted_members_are_refused_from_their_header(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_archive, "MAX_MANIFEST_BYTES", 4096)
    monkeypatch.setattr(_archive, "MAX_SIGNATURE_BYTES", 512)
    big = b"x" * 200_000
    manifest = manifest_for(MEMBERS)
    entries = good_entries()
    if which == "manifest":
        entries[0] = member(MANIFEST_NAME, manifest + b" " * 10_000)
    elif which == "signature":
        entries[1] = member(SIGNATURE_NAME, big)
    elif which == "unlisted":
        entries.append(member("huge.bin", big))
    else:  # a listed member whose header disagrees with the recorded size
        entries[2] = member("model.pkl", big)
    reader = CountingReader(archive(entries))
    with pytest.raises(DataLoss) as err:
        read_archive(io.BufferedReader(reader), key="fuzz/big.tar", verify=True, trust=TEST_TRUST)
    assert err.value.reason in ("BUNDLE_MALFORMED", "BUNDLE_CHECKSUM_MISMATCH")
    assert reader.read_bytes < 100_000  # refused before the big member was read

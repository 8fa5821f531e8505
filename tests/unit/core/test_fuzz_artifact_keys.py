"""Fuzzing artifact URIs and keys (issue #33, capability 3): whatever text a caller sends as
an artifact URI, the store either refuses it with InvalidArgument or maps it to a key inside
its own bucket/root: no path traversal (``..``, absolute paths, backslashes, control
characters, the reserved staging prefix), no URI of another store or bucket accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from atlas_core.config import S3Settings
from atlas_core.errors import InvalidArgument
from atlas_core.storage import LocalArtifactStore, open_artifact_store
from atlas_core.storage._base import STAGING_PREFIX, validate_key
from tests.support.parser_fuzz import fuzz_settings

SEGMENTS = st.sampled_from(
    ["..", ".", "", "a", "b.parquet", "%2e%2e", "..\\x", "\x00", "\n", " ", "~", STAGING_PREFIX]
) | st.text(max_size=6)
KEYS = st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join) | st.text(max_size=40)


def assert_safe_key(key: str) -> None:
    parts = key.split("/")
    assert key and not key.startswith("/") and not key.endswith("/")
    assert not any(part in ("", ".", "..") for part in parts)
    assert "\\" not in key and not any(ord(ch) < 32 or ord(ch) == 127 for ch in key)
    assert not key.startswith(STAGING_PREFIX)


@pytest.fixture(scope="module")
def s3_store():  # type: ignore[no-untyped-def]
    return open_artifact_store(
        S3Settings(
            endpoint="127.0.0.1:9",
            access_key=SecretStr("k"),
            secret_key=SecretStr("s" * 16),
            bucket="mine",
        )
    )


@fuzz_settings
@given(key=KEYS)
def test_keys_are_refused_or_safe(key: str) -> None:
    try:
        accepted = validate_key(key)
    except InvalidArgument as err:
        assert err.reason == "INVALID_KEY"
        return
    assert_safe_key(accepted)


@fuzz_settings
@given(
    scheme=st.sampled_from(["s3://mine/", "s3://other/", "s3://mine", "s3://", "local:///", ""]),
    key=KEYS,
)
def test_s3_uris_map_into_the_bucket_or_are_refused(s3_store, scheme: str, key: str) -> None:  # type: ignore[no-untyped-def]
    uri = scheme + key
    try:
        mapped = validate_key(s3_store.key_for_uri(uri))
    except InvalidArgument as err:
        assert err.reason in ("INVALID_KEY", "FOREIGN_ARTIFACT")
        return
    assert_safe_key(mapped)
    assert s3_store.uri(mapped) == f"s3://mine/{mapped}"
    if "://" in uri:  # a full URI is accepted only for this bucket
        assert uri == f"s3://mine/{mapped}"


@fuzz_settings
@given(key=KEYS, data=st.binary(max_size=16))
def test_local_store_never_writes_outside_its_root(tmp_path_factory, key: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("store")
    store = LocalArtifactStore(root)
    try:
        ref = store.put_bytes(store.key_for_uri(store.uri("") + key), data)
    except InvalidArgument:
        assert not any(p.is_file() for p in (root / "objects").rglob("*"))
        return
    assert_safe_key(ref.key)
    written = [p for p in Path(root).rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(root.resolve()) for p in written)
    assert store.get_bytes(ref.key) == data

"""One contract suite for every ArtifactStore backend (local directory and real SeaweedFS S3)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from minio import Minio

from atlas_core.config import S3Settings
from atlas_core.errors import DataLoss, InvalidArgument, NotFound
from atlas_core.storage import (
    STAGING_PREFIX,
    ArtifactRef,
    ArtifactStore,
    LocalArtifactStore,
    LocalStoreSettings,
    S3ArtifactStore,
    open_artifact_store,
)

MiB = 1024 * 1024
BACKENDS = ["local", "s3"]


@dataclass
class Backend:
    """A store plus raw access to its storage, to simulate corruption and inspect staging."""

    store: ArtifactStore
    tamper: Callable[[ArtifactRef, bytes], None]  # replace bytes, keep the recorded sha/size
    put_foreign: Callable[[str, bytes], None]  # an object written without any checksum
    staging_count: Callable[[], int]


def _local_backend(root: Path) -> Backend:
    store = LocalArtifactStore(root)

    def tamper(ref: ArtifactRef, data: bytes) -> None:
        path = store.path_for(ref.key)
        trailer = path.read_bytes()[ref.size :]
        path.write_bytes(data + trailer)

    def put_foreign(key: str, data: bytes) -> None:
        path = store.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return Backend(store, tamper, put_foreign, lambda: len(list((root / "staging").iterdir())))


def _s3_backend(settings: S3Settings) -> Backend:
    store = S3ArtifactStore(settings)
    raw = Minio(
        settings.endpoint,
        settings.access_key.get_secret_value(),
        settings.secret_key.get_secret_value(),
        secure=False,
    )

    def tamper(ref: ArtifactRef, data: bytes) -> None:
        recorded = {"atlas-sha256": ref.sha256, "atlas-size": str(ref.size)}
        raw.put_object(settings.bucket, ref.key, io.BytesIO(data), len(data), metadata=recorded)

    def put_foreign(key: str, data: bytes) -> None:
        if not raw.bucket_exists(settings.bucket):
            raw.make_bucket(settings.bucket)
        raw.put_object(settings.bucket, key, io.BytesIO(data), len(data))

    def staging_count() -> int:
        if not raw.bucket_exists(settings.bucket):
            return 0
        listing = raw.list_objects(settings.bucket, prefix=STAGING_PREFIX, recursive=True)
        return sum(1 for _ in listing)

    return Backend(store, tamper, put_foreign, staging_count)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    if request.param == "local":
        # Outside tmp_path, which tests use as the download directory and inspect.
        return _local_backend(tmp_path_factory.mktemp("store"))
    return _s3_backend(request.getfixturevalue("s3_settings"))


@pytest.fixture
def store(backend: Backend) -> ArtifactStore:
    return backend.store


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TrickleStream(io.RawIOBase):
    """A non-seekable stream of unknown length that returns short, irregular reads."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self._data = memoryview(data)
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        limit = self._rng.randint(1, 256 * 1024)
        take = limit if size < 0 else min(size, limit)
        chunk, self._data = bytes(self._data[:take]), self._data[take:]
        return chunk


# -- round trips ---------------------------------------------------------------------------


def test_empty_object_round_trips(store: ArtifactStore) -> None:
    ref = store.put_bytes("empty", b"")
    assert (ref.key, ref.size, ref.sha256) == ("empty", 0, sha(b""))
    assert store.get_bytes("empty") == b""
    assert store.get_bytes(ref) == b""
    assert store.stat("empty") == ref


def test_small_object_round_trips_with_metadata(store: ArtifactStore) -> None:
    data = b"label,entity\n1,a\n"
    ref = store.put_bytes("datasets/iris/v1.csv", data, {"content-type": "text/csv", "run_id": "7"})
    assert ref.sha256 == sha(data) and ref.size == len(data)
    assert ref.uri.endswith("/datasets/iris/v1.csv")
    if isinstance(store, S3ArtifactStore):
        assert ref.uri == f"s3://{store.bucket}/datasets/iris/v1.csv"
    assert store.get_bytes(ref) == data
    stat = store.stat("datasets/iris/v1.csv")
    assert stat == ref
    assert dict(stat.metadata) == {"content-type": "text/csv", "run_id": "7"}


def test_stream_of_unknown_length_round_trips_across_parts(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.store
    data = random.Random(1).randbytes(12 * MiB + 123)  # > 2 parts of 5 MiB: staging + copy
    ref = store.put_stream("models/m1/bundle.tar", TrickleStream(data), {"framework": "xgboost"})
    assert (ref.sha256, ref.size) == (sha(data), len(data))
    assert dict(store.stat(ref.key).metadata) == {"framework": "xgboost"}
    assert backend.staging_count() == 0

    with store.open_stream(ref, chunk_size=MiB) as stream:
        chunks = list(stream)
    assert max(len(c) for c in chunks) <= MiB
    assert b"".join(chunks) == data

    target = tmp_path / "out.tar"
    assert store.download_to_file(ref, target) == ref
    assert target.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar"]  # no partial file left


def test_put_file_round_trips(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(300_000))
    ref = store.put_file("files/in.bin", source)
    assert ref.sha256 == sha(source.read_bytes())
    store.download_to_file("files/in.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()


def test_overwrite_replaces_and_old_ref_is_refused(store: ArtifactStore) -> None:
    old = store.put_bytes("k", b"version one")
    new = store.put_bytes("k", b"version two!")
    assert store.get_bytes("k") == b"version two!"
    assert store.get_bytes(new) == b"version two!"
    with pytest.raises(DataLoss) as err:
        store.get_bytes(old)
    assert err.value.reason == "ARTIFACT_REPLACED"
    assert old.sha256 in err.value.message and new.sha256 in err.value.message


# -- stat, exists, list, delete ------------------------------------------------------------


def test_stat_exists_list_delete(backend: Backend) -> None:
    store = backend.store
    refs = {key: store.put_bytes(key, key.encode()) for key in ("b/2", "a/1", "b/1", "c")}
    assert store.exists("a/1") and not store.exists("a/2")
    assert [r.key for r in store.list()] == ["a/1", "b/1", "b/2", "c"]
    assert list(store.list("b/")) == [refs["b/1"], refs["b/2"]]
    assert list(store.list("zzz")) == []

    store.delete("b/1")
    store.delete("b/1")  # idempotent
    store.delete("never-existed")
    assert not store.exists("b/1")
    assert [r.key for r in store.list("b/")] == ["b/2"]
    with pytest.raises(NotFound):
        store.stat("b/1")


def test_object_without_checksum_is_not_an_artifact(backend: Backend) -> None:
    backend.store.put_bytes("real", b"x")
    backend.put_foreign("foreign", b"written behind the store's back")
    assert [r.key for r in backend.store.list()] == ["real"]
    with pytest.raises(DataLoss) as err:
        backend.store.get_bytes("foreign")
    assert err.value.reason == "CHECKSUM_MISSING"
    assert "foreign" in err.value.message


def test_missing_key_is_not_found_naming_the_key(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes("present", b"x")  # the bucket exists: the key alone is missing
    for read in (
        lambda: store.get_bytes("no/such/key"),
        lambda: store.stat("no/such/key"),
        lambda: store.open_stream("no/such/key"),
        lambda: store.download_to_file("no/such/key", tmp_path / "out"),
    ):
        with pytest.raises(NotFound) as err:
            read()
        assert "no/such/key" in err.value.message
    assert list(tmp_path.iterdir()) == []  # no target, no partial file


@pytest.mark.parametrize(
    "key", ["", "/abs", "trailing/", "a//b", "../up", "a/./b", "a\\b", "_staging/x", "x" * 1025]
)
def test_malformed_keys_are_rejected(store: ArtifactStore, key: str) -> None:
    with pytest.raises(InvalidArgument):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidArgument):
        store.get_bytes(key)


@pytest.mark.parametrize("meta", [{"Upper": "x"}, {"atlas-sha256": "x"}, {"k": "caf\u00e9"}])
def test_malformed_metadata_is_rejected(store: ArtifactStore, meta: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        store.put_bytes("k", b"x", meta)
    assert not store.exists("k")


# -- integrity -----------------------------------------------------------------------------


@pytest.mark.parametrize("tampered", [b"0123456789abcdeX", b"short"], ids=["same-size", "resized"])
def test_tampered_object_is_detected(backend: Backend, tmp_path: Path, tampered: bytes) -> None:
    store = backend.store
    original = b"0123456789abcdef"
    ref = store.put_bytes("victim", original)
    backend.tamper(ref, tampered)

    with pytest.raises(DataLoss) as err:
        store.get_bytes("victim")
    assert "victim" in err.value.message
    assert err.value.reason in ("CHECKSUM_MISMATCH", "SIZE_MISMATCH")
    expected, actual = (
        (ref.sha256, sha(tampered))
        if err.value.reason == "CHECKSUM_MISMATCH"
        else (str(ref.size), str(len(tampered)))
    )
    assert expected in err.value.message and actual in err.value.message

    target = tmp_path / "victim.bin"
    with pytest.raises(DataLoss):
        store.download_to_file(ref, target)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a partial file

    target.write_bytes(b"previous content")
    with pytest.raises(DataLoss):
        store.download_to_file("victim", target)
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.bin"]

    with pytest.raises(DataLoss), store.open_stream("victim", chunk_size=4) as stream:
        for _ in stream:
            pass
    assert store.get_bytes("victim", verify=False) == tampered


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_writers_never_tear_an_object(store: ArtifactStore) -> None:
    """8 writers race on one key while readers read: every read is one whole payload."""
    rng = random.Random(7)
    # 2-7 MiB: payloads above the 5 MiB part size take the staging + copy path on S3.
    payloads = [rng.randbytes(rng.randint(2 * MiB, 7 * MiB)) for _ in range(8)]
    by_sha = {sha(p): p for p in payloads}
    store.put_bytes("contended", payloads[0])
    done = threading.Event()
    failures: list[BaseException] = []
    reads: list[str] = []

    def writer(index: int) -> None:
        try:
            for round_ in range(3):
                data = payloads[index]
                ref = (
                    store.put_bytes("contended", data)
                    if (index + round_) % 2
                    else store.put_stream("contended", TrickleStream(data, seed=index))
                )
                assert ref.sha256 == sha(data)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                data = store.get_bytes("contended")  # verified against its recorded sha
                assert sha(data) in by_sha
                reads.append(sha(data))
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(timeout=300)
    done.set()
    for thread in readers:
        thread.join(timeout=60)

    assert not failures, failures[:3]
    assert reads, "readers never completed a read"
    final = store.get_bytes("contended")
    assert sha(final) in by_sha
    assert store.stat("contended").sha256 == sha(final)


# -- registry ------------------------------------------------------------------------------


def test_registry_opens_the_store_for_the_settings_type(tmp_path: Path) -> None:
    assert isinstance(open_artifact_store(LocalStoreSettings(tmp_path)), LocalArtifactStore)
    s3 = open_artifact_store(S3Settings(endpoint="127.0.0.1:1", bucket="atlas-x"))
    assert isinstance(s3, S3ArtifactStore) and s3.bucket == "atlas-x"
    with pytest.raises(InvalidArgument, match="no artifact store is registered"):
        open_artifact_store(object())


def test_refs_compare_by_content_not_metadata() -> None:
    a = ArtifactRef("s3://b/k", "k", "00", 1, {"x": "1"})
    b = ArtifactRef("s3://b/k", "k", "00", 1)
    assert a == b and hash(a) == hash(b)

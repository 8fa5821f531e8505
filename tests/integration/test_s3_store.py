"""S3-specific behaviour against a real SeaweedFS: auth, errors, publish mechanics, big streams."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import stat
import time
import tracemalloc
from pathlib import Path

import pytest
import urllib3
from minio import Minio
from pydantic import SecretStr

from atlas_core.config import S3Settings
from atlas_core.errors import FailedPrecondition, Unauthenticated, Unavailable
from atlas_core.launcher import SeaweedS3Server, pick_free_ports
from atlas_core.storage import STAGING_PREFIX, S3ArtifactStore, _s3

MiB = 1024 * 1024


def raw_client(settings: S3Settings) -> Minio:
    return Minio(
        settings.endpoint,
        settings.access_key.get_secret_value(),
        settings.secret_key.get_secret_value(),
        secure=False,
    )


def staging_objects(settings: S3Settings) -> list[str]:
    listing = raw_client(settings).list_objects(
        settings.bucket, prefix=STAGING_PREFIX, recursive=True
    )
    return [obj.object_name or "" for obj in listing]


# -- credentials and transport -------------------------------------------------------------


@pytest.mark.parametrize("which", ["secret_key", "access_key"])
def test_wrong_keys_are_refused_with_a_fix(s3_settings: S3Settings, which: str) -> None:
    S3ArtifactStore(s3_settings).put_bytes("k", b"data")
    wrong = s3_settings.model_copy(update={which: SecretStr("wrong-" + which)})
    store = S3ArtifactStore(wrong)
    for call in (lambda: store.put_bytes("k2", b"x"), lambda: store.get_bytes("k")):
        with pytest.raises(Unauthenticated) as err:
            call()
        message = err.value.message
        assert s3_settings.endpoint in message
        assert f"'{wrong.access_key.get_secret_value()}'" in message
        assert "S3__ACCESS_KEY" in message and "S3__SECRET_KEY" in message
        assert wrong.secret_key.get_secret_value() not in message
        assert s3_settings.secret_key.get_secret_value() not in message
    assert not S3ArtifactStore(s3_settings).exists("k2")


def test_unsigned_http_requests_are_refused(s3_settings: S3Settings) -> None:
    store = S3ArtifactStore(s3_settings)
    store.put_bytes("guarded", b"secret data")
    http = urllib3.PoolManager(retries=False)
    url = f"http://{s3_settings.endpoint}/{s3_settings.bucket}/guarded"
    assert http.request("GET", url).status == 403
    assert http.request("PUT", url, body=b"overwritten").status == 403
    assert http.request("GET", f"http://{s3_settings.endpoint}/").status == 403
    assert store.get_bytes("guarded") == b"secret data"


def test_unreachable_endpoint_is_unavailable_naming_it(s3_settings: S3Settings) -> None:
    (port,) = pick_free_ports(1)  # nothing listens there
    settings = s3_settings.model_copy(update={"endpoint": f"127.0.0.1:{port}"})
    store = S3ArtifactStore(settings, connect_timeout=1.0, retries=1)
    started = time.monotonic()
    with pytest.raises(Unavailable) as err:
        store.get_bytes("k")
    assert f"127.0.0.1:{port}" in err.value.message
    assert "S3__ENDPOINT" in err.value.message
    assert time.monotonic() - started < 10
    with pytest.raises(Unavailable):
        store.put_bytes("k", b"x")


def test_bucket_is_created_on_first_write(s3_settings: S3Settings) -> None:
    raw = raw_client(s3_settings)
    assert not raw.bucket_exists(s3_settings.bucket)
    store = S3ArtifactStore(s3_settings)
    assert list(store.list()) == []  # reads on a missing bucket: empty, not an error
    assert not store.exists("k")
    store.put_bytes("k", b"x")
    assert raw.bucket_exists(s3_settings.bucket)


# -- atomic publish mechanics ---------------------------------------------------------------


def test_large_put_is_copied_from_staging_with_metadata(s3_settings: S3Settings) -> None:
    """SeaweedFS must honour CopyObject with REPLACE metadata and copy chunks independently."""
    data = os.urandom(11 * MiB)
    ref = S3ArtifactStore(s3_settings).put_stream("big", io.BytesIO(data), {"stage": "copy"})
    info = raw_client(s3_settings).stat_object(s3_settings.bucket, "big")
    assert info.metadata["x-amz-meta-atlas-sha256"] == hashlib.sha256(data).hexdigest()
    assert info.metadata["x-amz-meta-atlas-size"] == str(len(data))
    assert info.metadata["x-amz-meta-stage"] == "copy"
    assert staging_objects(s3_settings) == []  # staging deleted ...
    assert S3ArtifactStore(s3_settings).get_bytes(ref) == data  # ... without hurting the copy


def test_compose_path_for_objects_above_the_copy_limit(
    s3_settings: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 5 GiB publish uses multipart UploadPartCopy; shrink the limit to exercise it."""
    store = S3ArtifactStore(s3_settings)
    monkeypatch.setattr(_s3, "MAX_COPY_SIZE", 5 * MiB)
    data = os.urandom(12 * MiB + 5)  # three ranged part copies: 5 + 5 + 2 MiB
    ref = store.put_stream("composed", io.BytesIO(data), {"stage": "compose"})
    assert store.get_bytes(ref) == data
    assert dict(store.stat("composed").metadata) == {"stage": "compose"}
    assert staging_objects(s3_settings) == []


def test_purge_staging_removes_abandoned_uploads(s3_settings: S3Settings) -> None:
    store = S3ArtifactStore(s3_settings)
    store.put_bytes("k", b"x")
    raw_client(s3_settings).put_object(
        s3_settings.bucket, f"{STAGING_PREFIX}abandoned", io.BytesIO(b"half"), 4
    )
    assert [r.key for r in store.list()] == ["k"]
    assert store.purge_staging(older_than_seconds=3600) == 0
    assert store.purge_staging(older_than_seconds=-60) == 1
    assert staging_objects(s3_settings) == []


@pytest.mark.slow
def test_200_mib_stream_round_trips_in_bounded_memory(s3_settings: S3Settings) -> None:
    size = 200 * MiB
    pattern = os.urandom(MiB) * 2

    class Generated(io.RawIOBase):
        """200 MiB produced on the fly (a function of the offset), never held as a whole."""

        def __init__(self) -> None:
            self.offset = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            take = min(size - self.offset, MiB if n < 0 else min(n, MiB))
            start = self.offset % MiB
            self.offset += take
            return pattern[start : start + take]

    expected = hashlib.sha256()
    probe = Generated()
    while chunk := probe.read(300_000):
        expected.update(chunk)

    settings = s3_settings.model_copy(update={"part_size": 16 * MiB})  # the default part size
    store = S3ArtifactStore(settings)
    tracemalloc.start()
    try:
        ref = store.put_stream("huge", Generated())
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with store.open_stream(ref) as stream:
            for chunk in stream:
                digest.update(chunk)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (ref.size, ref.sha256) == (size, expected.hexdigest())
    assert digest.hexdigest() == expected.hexdigest()
    assert put_peak < 4 * 16 * MiB, f"put peak {put_peak / MiB:.0f} MiB"
    assert get_peak < 8 * MiB, f"get peak {get_peak / MiB:.0f} MiB"
    print(f"200 MiB stream: put peak {put_peak / MiB:.1f} MiB, get peak {get_peak / MiB:.1f} MiB")


# -- the server process ---------------------------------------------------------------------


def test_server_command_is_loopback_with_enforced_keys(tmp_path: Path) -> None:
    server = SeaweedS3Server(tmp_path, access_key="ak-1", secret_key="sk-secret-1")
    cmd = server.command()
    assert "-ip=127.0.0.1" in cmd.argv and "-ip.bind=127.0.0.1" in cmd.argv
    assert "-master.telemetry=false" in cmd.argv
    assert any(a.startswith("-logdir=") for a in cmd.argv)
    assert f"-s3.config={cmd.s3_config_path}" in cmd.argv
    assert len(set(cmd.ports.values())) == len(cmd.ports)  # every listener has its own port
    assert cmd.endpoint == f"127.0.0.1:{cmd.s3_port}"
    identities = json.loads(cmd.s3_config_path.read_text())
    (creds,) = identities["identities"][0]["credentials"]
    assert creds == {"accessKey": "ak-1", "secretKey": "sk-secret-1"}
    assert stat.S_IMODE(cmd.s3_config_path.stat().st_mode) == 0o600


def test_port_in_use_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = SeaweedS3Server(tmp_path, access_key="a", secret_key="b", port=port)
        with pytest.raises(FailedPrecondition) as err:
            server.start(timeout=10)
    assert err.value.reason == "PORT_IN_USE"
    assert str(port) in err.value.message and "already in use" in err.value.message
    assert server.pid is None


@pytest.mark.slow
def test_second_instance_runs_beside_the_first_and_stops(
    tmp_path: Path, seaweed_server: SeaweedS3Server
) -> None:
    with SeaweedS3Server(tmp_path / "data", access_key="ak2", secret_key="sk2-secret") as other:
        assert other.endpoint != seaweed_server.endpoint
        pid = other.pid
        assert pid is not None and other.running
        Minio(other.endpoint, "ak2", "sk2-secret", secure=False).list_buckets()
    assert not other.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
    assert (tmp_path / "data" / "logs" / "weed.log").exists()

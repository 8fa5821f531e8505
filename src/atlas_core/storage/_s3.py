"""Artifact store on any S3 API (SeaweedFS, MinIO, AWS S3) through the ``minio`` SDK.

Atomic publish. An object's sha256 is known only after its last byte, but S3 user metadata
must be sent with the request that creates the object. So:

* objects up to ``part_size`` are read into memory, hashed, and sent in one PUT carrying the
  metadata -- a single PUT is atomic on every S3 implementation;
* larger objects are streamed (multipart, one part in memory at a time) to a unique staging key
  ``_staging/<uuid>`` while being hashed, then server-side copied to the final key with
  ``x-amz-metadata-directive: REPLACE`` and the sha256/size metadata (a multipart
  UploadPartCopy "compose" above the 5 GiB CopyObject limit), then the staging object is
  deleted. The final key is therefore only ever written by one request that creates a complete
  object with its metadata: readers see the old or the new object, never a partial or
  metadata-less one, and racing writers leave one writer's bytes with that writer's checksum.

SeaweedFS 4.x honours both CopyObject with REPLACE and UploadPartCopy, and its copy is an
independent copy of the chunks (deleting the staging object does not affect the final one);
the integration tests check all of this against a real ``weed``.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import BinaryIO, cast

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, ComposeSource, CopySource
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name
from minio.sse import Sse, SseKMS, SseS3

from atlas_core.config import S3Settings
from atlas_core.errors import (
    AtlasError,
    DataLoss,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from atlas_core.storage._base import (
    DEFAULT_CHUNK_SIZE,
    STAGING_PREFIX,
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

_Headers = dict[str, str | list[str] | tuple[str]]  # the SDK's metadata type
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_COPY_SIZE = 5 * 1024 * 1024 * 1024  # CopyObject limit; larger objects use compose
SHA256_META = "atlas-sha256"
SIZE_META = "atlas-size"
_USER_META_PREFIX = "x-amz-meta-"
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_MISSING = {"NoSuchKey", "NoSuchBucket", "ResourceNotFound"}


class S3ArtifactStore(ArtifactStore):
    """:class:`ArtifactStore` on an S3 bucket; see the module docstring for atomic publish.

    Thread-safe: the minio client and its urllib3 pool are shared by all threads. The bucket
    is created on first write if missing. Timeouts and retries are explicit (the SDK's
    defaults wait five minutes to connect): connection failures and 5xx answers are retried
    with backoff, then surface as ``Unavailable`` naming the endpoint.
    """

    def __init__(
        self,
        settings: S3Settings,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retries: int = 3,
        max_connections: int = 32,
    ) -> None:
        if not MIN_PART_SIZE <= settings.part_size <= MAX_COPY_SIZE:
            raise InvalidArgument(
                f"s3.part_size must be between 5 MiB and 5 GiB, got {settings.part_size}",
                reason="INVALID_CONFIG",
            )
        endpoint, secure = _split_endpoint(settings.endpoint, settings.secure)
        self._endpoint = endpoint
        self._sse = _server_side_encryption(settings, secure)
        self._bucket = settings.bucket
        self._part_size = settings.part_size
        self._access_key = settings.access_key.get_secret_value()
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=max_connections,
            cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
            ca_certs=certifi.where() if secure else None,
            retries=urllib3.Retry(
                total=retries,
                connect=retries,
                read=0,  # a half-read body cannot be replayed safely
                backoff_factor=0.2,
                status_forcelist=[500, 502, 503, 504],
            ),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=self._access_key,
                secret_key=settings.secret_key.get_secret_value(),
                secure=secure,
                region=settings.region or None,
                http_client=self._http,
            )
        except ValueError as exc:
            raise InvalidArgument(
                f"invalid S3 endpoint {settings.endpoint!r}: {exc}", reason="INVALID_CONFIG"
            ) from None
        try:
            check_bucket_name(settings.bucket)
        except ValueError as exc:
            raise InvalidArgument(
                f"invalid S3 bucket name {settings.bucket!r} (s3.bucket): {exc}",
                reason="INVALID_CONFIG",
            ) from None
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ArtifactStore(endpoint={self._endpoint!r}, bucket={self._bucket!r})"

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    # -- writes ------------------------------------------------------------------------------

    def put_stream(
        self, key: str, stream: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ArtifactRef:
        validate_key(key)
        user_meta = validate_metadata(metadata)
        self._ensure_bucket()
        reader = HashingReader(stream)
        head = reader.read(self._part_size + 1)  # fills: short only at end of stream
        if len(head) <= self._part_size:
            headers = _atlas_headers(reader.sha256, reader.size, user_meta)
            with self._translate(key):
                self._client.put_object(
                    self._bucket, key, io.BytesIO(head), len(head), metadata=headers, sse=self._sse
                )
        else:
            body = _Prepended(head, reader)
            del head  # the stream owns the first part now; it is freed once uploaded
            self._publish_via_staging(key, body, reader, user_meta)
        return ArtifactRef(self.uri(key), key, reader.sha256, reader.size, frozen(user_meta))

    def _publish_via_staging(
        self, key: str, body: io.RawIOBase, hashed: HashingReader, user_meta: dict[str, str]
    ) -> None:
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        try:
            with self._translate(key):
                self._client.put_object(
                    self._bucket,
                    staging,
                    cast(BinaryIO, body),
                    -1,
                    part_size=self._part_size,
                    num_parallel_uploads=1,  # one part in memory at a time
                    sse=self._sse,
                )
                headers = _atlas_headers(hashed.sha256, hashed.size, user_meta)
                if hashed.size <= MAX_COPY_SIZE:
                    self._client.copy_object(
                        self._bucket,
                        key,
                        CopySource(self._bucket, staging),
                        metadata=headers,
                        metadata_directive=REPLACE,
                        sse=self._sse,
                    )
                else:
                    # Multipart UploadPartCopy, one range per part (CopyObject stops at 5 GiB).
                    sources = [
                        ComposeSource(
                            self._bucket,
                            staging,
                            offset=offset,
                            length=min(MAX_COPY_SIZE, hashed.size - offset),
                        )
                        for offset in range(0, hashed.size, MAX_COPY_SIZE)
                    ]
                    self._client.compose_object(
                        self._bucket, key, sources, metadata=headers, sse=self._sse
                    )
        finally:
            self._remove_quietly(staging)

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            with self._translate(key):
                self._client.remove_object(self._bucket, key)
        except NotFound:
            pass  # missing bucket: nothing to delete

    def purge_staging(self, older_than_seconds: float = 24 * 3600) -> int:
        """Delete staging objects left by crashed writers; returns how many were removed."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            with self._translate(STAGING_PREFIX):
                for obj in self._client.list_objects(
                    self._bucket, prefix=STAGING_PREFIX, recursive=True
                ):
                    modified = obj.last_modified or datetime.now(timezone.utc)
                    if obj.object_name and modified.timestamp() < cutoff:
                        self._remove_quietly(obj.object_name)
                        removed += 1
        except NotFound:
            return 0
        return removed

    # -- reads -------------------------------------------------------------------------------

    def open_stream(
        self, key: KeyOrRef, *, verify: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ArtifactStream:
        name = key_of(key)
        with self._translate(name):
            response = self._client.get_object(self._bucket, name)

        def release() -> None:
            response.close()
            response.release_conn()

        try:
            # Metadata and body come from the same response, hence from the same version.
            recorded = self._ref_from_headers(name, response.headers)
            check_expected(key, recorded)
        except BaseException:
            release()
            raise
        chunks = self._chunks(name, lambda: response.stream(chunk_size))
        return ArtifactStream(recorded, chunks, verify=verify, close=release)

    def _chunks(self, key: str, stream: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
        with self._translate(key):
            yield from stream()

    def stat(self, key: str) -> ArtifactRef:
        validate_key(key)
        with self._translate(key):
            info = self._client.stat_object(self._bucket, key)
        return self._ref_from_headers(key, info.metadata or {})

    def list(self, prefix: str = "") -> Iterator[ArtifactRef]:
        try:
            with self._translate(prefix or "/"):
                listing = self._client.list_objects(self._bucket, prefix=prefix, recursive=True)
                names = [obj.object_name for obj in listing if obj.object_name and not obj.is_dir]
        except NotFound:
            return
        for name in sorted(names):
            if name.startswith(STAGING_PREFIX):
                continue
            try:
                yield self.stat(name)
            except (NotFound, InvalidArgument):
                continue  # deleted meanwhile, or a foreign key our rules do not allow
            except DataLoss as exc:
                if exc.reason != "CHECKSUM_MISSING":
                    raise

    # -- plumbing ----------------------------------------------------------------------------

    def _ref_from_headers(self, key: str, headers: Mapping[str, str]) -> ArtifactRef:
        meta = {
            name.lower()[len(_USER_META_PREFIX) :]: value
            for name, value in headers.items()
            if name.lower().startswith(_USER_META_PREFIX)
        }
        sha256 = meta.pop(SHA256_META, None)
        size = meta.pop(SIZE_META, None)
        if sha256 is None or size is None or not size.isdigit():
            raise DataLoss(
                f"object '{key}' in bucket '{self._bucket}' has no recorded sha256/size: "
                "it was not written through an artifact store",
                reason="CHECKSUM_MISSING",
                metadata={"key": key},
            )
        return ArtifactRef(self.uri(key), key, sha256, int(size), frozen(meta))

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            with self._translate(f"bucket {self._bucket}"):
                if not self._client.bucket_exists(self._bucket):
                    try:
                        self._client.make_bucket(self._bucket)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            self._bucket_ready = True

    def _remove_quietly(self, name: str) -> None:
        try:
            self._client.remove_object(self._bucket, name)
        except (S3Error, ServerError, InvalidResponseError, urllib3.exceptions.HTTPError):
            pass  # a leftover staging object is harmless; purge_staging() collects it

    @contextmanager
    def _translate(self, key: str) -> Iterator[None]:
        """Turn SDK and transport errors into domain errors that say what to fix."""
        try:
            yield
        except AtlasError:
            raise
        except S3Error as exc:
            raise self._from_s3_error(exc, key) from None
        except (ServerError, InvalidResponseError) as exc:
            raise Unavailable(
                f"object store at {self._endpoint} failed while accessing '{key}': {_short(exc)}",
                reason="OBJECT_STORE_ERROR",
            ) from None
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise Unavailable(
                f"object store at {self._endpoint} is unreachable ({_short(exc)}): check the "
                "S3 endpoint setting (ATLAS_<SERVICE>_S3__ENDPOINT) and that the store is running",
                reason="OBJECT_STORE_UNAVAILABLE",
            ) from None

    def _credentials_rejected(self) -> bool:
        """Whether the store rejects our keys outright.

        HEAD answers (stat, bucket_exists) carry no error body, so a bad key shows up there as
        a bare AccessDenied; a ListBuckets names the real cause.
        """
        try:
            self._client.list_buckets()
        except S3Error as exc:
            return exc.code in _BAD_CREDENTIALS
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError):
            return False
        return False

    def _from_s3_error(self, exc: S3Error, key: str) -> AtlasError:
        if exc.code in _MISSING:
            where = f"bucket '{self._bucket}'"
            if exc.code == "NoSuchBucket":
                where += " (the bucket does not exist)"
            return NotFound(
                f"artifact '{key}' not found in {where} at {self._endpoint}",
                reason="ARTIFACT_NOT_FOUND",
                metadata={"key": key},
            )
        creds_hint = "check ATLAS_<SERVICE>_S3__ACCESS_KEY / ATLAS_<SERVICE>_S3__SECRET_KEY"
        bad_credentials = exc.code in _BAD_CREDENTIALS or (
            exc.code == "AccessDenied" and self._credentials_rejected()
        )
        if bad_credentials:
            return Unauthenticated(
                f"object store at {self._endpoint} refused the credentials for access key "
                f"'{self._access_key}': {creds_hint}",
                reason="OBJECT_STORE_BAD_CREDENTIALS",
            )
        if exc.code == "AccessDenied":
            return PermissionDenied(
                f"object store at {self._endpoint} denied access key '{self._access_key}' "
                f"access to '{key}' in bucket '{self._bucket}': {creds_hint}, and that the key "
                "may read and write the bucket",
                reason="OBJECT_STORE_ACCESS_DENIED",
            )
        return Internal(
            f"object store at {self._endpoint} rejected a request for '{key}': "
            f"{exc.code}: {exc.message}",
            reason="OBJECT_STORE_ERROR",
        )


class _Prepended(io.RawIOBase):
    """``head`` followed by the rest of ``tail``, as one readable stream."""

    def __init__(self, head: bytes, tail: BinaryIO | HashingReader) -> None:
        super().__init__()
        self._head = head
        self._tail = tail

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            # Hand the buffer over whole when it fits: no second part-sized copy in memory.
            take = len(self._head) if size < 0 else min(size, len(self._head))
            data, self._head = self._head[:take], self._head[take:]
            return data
        return self._tail.read(size)


def _atlas_headers(sha256: str, size: int, user_meta: Mapping[str, str]) -> _Headers:
    # Prefixed here: the SDK sends some bare names (content-type, ...) as standard headers.
    meta = {**user_meta, SHA256_META: sha256, SIZE_META: str(size)}
    return {_USER_META_PREFIX + name: value for name, value in meta.items()}


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    for scheme, is_secure in (("https://", True), ("http://", False)):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :].rstrip("/"), is_secure
    return endpoint.rstrip("/"), secure


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # MaxRetryError wraps the real cause
    text = str(reason or exc)
    return text if len(text) <= 300 else text[:300] + "..."


def _server_side_encryption(settings: S3Settings, secure: bool) -> Sse | None:
    """The SSE every write asks for (s3.sse), or None for the bucket's default."""
    if settings.sse == "s3":
        return SseS3()
    if settings.sse == "kms":
        if not secure:
            raise InvalidArgument(
                "s3.sse 'kms' sends key material headers: it needs an https endpoint "
                "(s3.secure=true)",
                reason="INVALID_CONFIG",
            )
        return SseKMS(str(settings.kms_key_id), {})
    return None

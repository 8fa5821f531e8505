"""Artifact storage: immutable blobs with recorded sha256 and size, published atomically.

Services pass artifacts by reference (:class:`ArtifactRef`: URI + sha256 + size) and read them
through an :class:`ArtifactStore` opened from configuration::

    store = open_artifact_store(settings.s3)
    ref = store.put_file("datasets/iris/v1.parquet", path)
    store.download_to_file(ref, local_path)  # verified against ref.sha256

:class:`S3ArtifactStore` serves every deployment (SeaweedFS, MinIO, AWS S3);
:class:`LocalArtifactStore` exists for unit tests.
"""

from __future__ import annotations

from atlas_core.config import S3Settings
from atlas_core.storage._base import (
    DEFAULT_CHUNK_SIZE,
    STAGING_PREFIX,
    ArtifactRef,
    ArtifactStore,
    ArtifactStream,
    KeyOrRef,
    validate_key,
)
from atlas_core.storage._local import LocalArtifactStore, LocalStoreSettings
from atlas_core.storage._registry import open_artifact_store, register_artifact_store
from atlas_core.storage._s3 import S3ArtifactStore

register_artifact_store(S3Settings, S3ArtifactStore)
register_artifact_store(LocalStoreSettings, lambda settings: LocalArtifactStore(settings.root))

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "STAGING_PREFIX",
    "ArtifactRef",
    "ArtifactStore",
    "ArtifactStream",
    "KeyOrRef",
    "LocalArtifactStore",
    "LocalStoreSettings",
    "S3ArtifactStore",
    "open_artifact_store",
    "register_artifact_store",
    "validate_key",
]

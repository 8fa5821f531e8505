"""Moving directories and files between a job's work directory and the object store."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from atlas_core.storage import ArtifactRef, ArtifactStore


def ref_dict(ref: ArtifactRef, media_type: str = "") -> dict[str, Any]:
    return {"uri": ref.uri, "sha256": ref.sha256, "size_bytes": ref.size, "media_type": media_type}


def put_dir(artifacts: ArtifactStore, key: str, directory: Path, scratch: Path) -> ArtifactRef:
    """Upload ``directory`` as an uncompressed tar (its contents at the archive root)."""
    archive = scratch / (directory.name + ".tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(directory, arcname=".")
    try:
        return artifacts.put_file(key, archive)
    finally:
        archive.unlink(missing_ok=True)


def get_dir(artifacts: ArtifactStore, uri: str, target: Path) -> None:
    """Download a tar made by :func:`put_dir` (sha256-verified) and unpack it into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target.with_suffix(".tar.partial")
    artifacts.download_to_file(artifacts.key_for_uri(uri), archive)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    finally:
        archive.unlink(missing_ok=True)

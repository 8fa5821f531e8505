"""How serving reads model bundles: references from requests to store keys, and the shared
bundle loader (atlas_core.bundles) behind one seam so tests and the registry use the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atlas_core.bundle_signing import BundleTrust
from atlas_core.errors import InvalidArgument
from atlas_core.storage import ArtifactRef, ArtifactStore
from atlas_serving.domain import BundleRef

# (store, ref) -> atlas_core.bundles.LoadedBundle; raises FailedPrecondition when the
# signature is refused, DataLoss on checksum failure.
BundleLoader = Callable[[ArtifactStore, ArtifactRef], Any]


def trusted_loader(trust: BundleTrust) -> BundleLoader:
    """The loader of bundles signed by a key ``trust`` accepts."""

    def load(store: ArtifactStore, ref: ArtifactRef) -> Any:
        from atlas_core.bundles import load_bundle  # heavy (pandas, joblib): import when needed

        return load_bundle(store, ref, trust=trust, verify=True)

    return load


def resolve_artifact(store: ArtifactStore, ref: BundleRef) -> ArtifactRef:
    """The store's artifact a request names; a partial reference (no sha256 or size) is
    completed from what the store recorded. Raises InvalidArgument, NotFound."""
    if not ref.uri:
        raise InvalidArgument("bundle.uri is required", reason="BUNDLE_REQUIRED")
    key = store.key_for_uri(ref.uri)
    if ref.sha256 and len(ref.sha256) != 64:
        raise InvalidArgument("bundle.sha256 must be 64 hex digits", reason="BAD_BUNDLE_REF")
    if not ref.sha256 or not ref.size:  # a partial ref: take what was recorded
        recorded = store.stat(key)
        if ref.sha256 and ref.sha256 != recorded.sha256:
            raise InvalidArgument(
                f"bundle {key} does not hold sha256 {ref.sha256}", reason="BAD_BUNDLE_REF"
            )
        return recorded
    return ArtifactRef(uri=store.uri(key), key=key, sha256=ref.sha256, size=ref.size)

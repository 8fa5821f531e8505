"""Model bundles: the one artifact a trainer writes and serving loads.

A bundle is an uncompressed tar in the artifact store::

    manifest.json          format version, task, classes, target, input schema, training and
                           prediction statistics (drift baselines), metrics, lineage, library
                           versions, sha256 + size of every other member
    signature.json         Ed25519 signature of manifest.json's bytes and the signing key's id
    model/model.joblib     the fitted model (pipeline or ensemble), joblib-pickled
    extra/<name>           optional files (reports, plots, ...)

Write with :func:`write_bundle` (signed by a :class:`BundleSigner`), load with
:func:`load_bundle`: it checks the signature against a :class:`BundleTrust` first
(``FailedPrecondition`` ``BUNDLE_UNSIGNED`` / ``BUNDLE_SIGNER_UNTRUSTED`` /
``BUNDLE_SIGNATURE_INVALID``), then the artifact and every member checksum (``DataLoss``
``BUNDLE_CHECKSUM_MISMATCH``), and unpickles only after both. :func:`bundle_signer` and
:func:`bundle_trust` build them from a service's :class:`~atlas_core.config.BundleSettings`.
:func:`read_manifest` reads the manifest alone. Drift statistics against the stored
baselines live in :mod:`atlas_core.bundles.drift`.

This package is shared by the trainer and serving and imports no service. Loading unpickles
code: the signature is what makes that safe (docs/security.md): the checksums alone detect
corruption, not who wrote the bundle.
"""

from __future__ import annotations

from atlas_core.bundle_signing import (
    SIGNATURE_NAME,
    BundleSigner,
    BundleTrust,
    bundle_signer,
    bundle_trust,
    ensure_local_keypair,
)
from atlas_core.bundles._archive import CHECKSUM_REASON
from atlas_core.bundles._contributions import raw_contributions
from atlas_core.bundles._loader import LoadedBundle, load_bundle, read_manifest
from atlas_core.bundles._manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODEL_MEMBER,
    TASKS,
    BundleLineage,
)
from atlas_core.bundles._occlusion import (
    background_from_stats,
    background_rows,
    occlusion_contributions,
)
from atlas_core.bundles._predictor import Predictor
from atlas_core.bundles._schema import ColumnSpec, InputSchema
from atlas_core.bundles._writer import write_bundle

__all__ = [
    "CHECKSUM_REASON",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_MEMBER",
    "SIGNATURE_NAME",
    "TASKS",
    "BundleLineage",
    "BundleSigner",
    "BundleTrust",
    "ColumnSpec",
    "InputSchema",
    "LoadedBundle",
    "Predictor",
    "background_from_stats",
    "background_rows",
    "bundle_signer",
    "bundle_trust",
    "ensure_local_keypair",
    "load_bundle",
    "occlusion_contributions",
    "raw_contributions",
    "read_manifest",
    "write_bundle",
]

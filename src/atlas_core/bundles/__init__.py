"""Model bundles: the one artifact a trainer writes and serving loads.

A bundle is an uncompressed tar in the artifact store::

    manifest.json          format version, task, classes, target, input schema, training and
                           prediction statistics (drift baselines), metrics, lineage, library
                           versions, sha256 + size of every other member
    model/model.joblib     the fitted model (pipeline or ensemble), joblib-pickled
    extra/<name>           optional files (reports, plots, ...)

Write with :func:`write_bundle`, load with :func:`load_bundle` (verifies the artifact and
every member checksum before unpickling; ``DataLoss`` with reason
``BUNDLE_CHECKSUM_MISMATCH`` otherwise). :func:`read_manifest` reads the manifest alone.
Drift statistics against the stored baselines live in :mod:`atlas_core.bundles.drift`.

This package is shared by the trainer and serving and imports no service. Loading unpickles
code: only load bundles from a store you trust (the checksums detect corruption and
tampering after publication, not a malicious writer with store access).
"""

from __future__ import annotations

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
from atlas_core.bundles._predictor import Predictor
from atlas_core.bundles._schema import ColumnSpec, InputSchema
from atlas_core.bundles._writer import write_bundle

__all__ = [
    "CHECKSUM_REASON",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_MEMBER",
    "TASKS",
    "BundleLineage",
    "ColumnSpec",
    "InputSchema",
    "LoadedBundle",
    "Predictor",
    "load_bundle",
    "raw_contributions",
    "read_manifest",
    "write_bundle",
]

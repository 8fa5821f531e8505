"""Model bundles on a real S3 server (SeaweedFS): round trip, contributions, tampering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from minio import Minio

from atlas_core.bundles import CHECKSUM_REASON, MODEL_MEMBER, load_bundle, read_manifest
from atlas_core.config import S3Settings
from atlas_core.errors import DataLoss
from atlas_core.storage import S3ArtifactStore
from tests.support.signing import TEST_TRUST
from tests.unit.core.test_bundles import CASES, Case, _rewrite_tar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {name: build() for name, build in CASES.items()}


@pytest.fixture
def store(s3_settings: S3Settings) -> S3ArtifactStore:
    return S3ArtifactStore(s3_settings)


@pytest.mark.parametrize("name", ["binary", "multiclass", "regression"])
def test_round_trip_on_s3(store: S3ArtifactStore, cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ref = case.write(store, f"models/{name}/bundle.tar")
    assert ref.uri.startswith("s3://") and ref.metadata["kind"] == "model-bundle"
    assert read_manifest(store, ref)["task"] == case.task
    bundle = load_bundle(store, ref, trust=TEST_TRUST)
    np.testing.assert_array_equal(bundle.predictor.predict(case.X), case.model.predict(case.X))
    contributions = bundle.predictor.contributions(case.X.head(3))
    assert contributions is not None
    values, names = contributions
    assert values.shape == (3, len(names) + 1)


def test_tampering_on_s3_is_refused(
    store: S3ArtifactStore, s3_settings: S3Settings, cases: dict[str, Case]
) -> None:
    ref = cases["binary"].write(store, "models/t/bundle.tar")
    original = store.get_bytes(ref)

    # Bytes changed behind the store's back, recorded checksum kept: the artifact check fails.
    raw = Minio(
        s3_settings.endpoint,
        s3_settings.access_key.get_secret_value(),
        s3_settings.secret_key.get_secret_value(),
        secure=False,
    )
    corrupt = bytearray(original)
    corrupt[len(corrupt) // 2] ^= 0xFF
    recorded = {"atlas-sha256": ref.sha256, "atlas-size": str(ref.size)}
    raw.put_object(
        s3_settings.bucket, ref.key, io.BytesIO(bytes(corrupt)), len(corrupt), metadata=recorded
    )
    with pytest.raises(DataLoss) as err:
        load_bundle(store, ref.key, trust=TEST_TRUST)
    assert err.value.reason == CHECKSUM_REASON

    # A member swapped and republished through the store: the member check fails.
    store.put_bytes(ref.key, _rewrite_tar(original, {MODEL_MEMBER: b"swapped"}))
    with pytest.raises(DataLoss) as err:
        load_bundle(store, ref.key, trust=TEST_TRUST)
    assert err.value.reason == CHECKSUM_REASON
    assert err.value.metadata["member"] == MODEL_MEMBER

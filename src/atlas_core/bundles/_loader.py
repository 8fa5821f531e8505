"""load_bundle / read_manifest: a verified bundle back into a predictor."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, cast

import joblib

from atlas_core.bundle_signing import BundleTrust
from atlas_core.bundles._archive import CHECKSUM_REASON, ChunkReader, read_archive
from atlas_core.bundles._archive import read_manifest_only as _read_manifest_only
from atlas_core.bundles._manifest import EXTRA_PREFIX, version_warnings
from atlas_core.bundles._predictor import Predictor
from atlas_core.bundles._schema import InputSchema
from atlas_core.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from atlas_core.storage import ArtifactRef, ArtifactStore, KeyOrRef


@dataclass(frozen=True)
class LoadedBundle:
    """A verified, loaded bundle.

    ``size_bytes`` is the artifact's size; ``memory_bytes`` the unpacked members' size (a
    lower bound of the memory the model takes, for serving's memory budget);
    ``load_seconds`` the wall time of :func:`load_bundle` (download, verify, unpickle);
    ``warnings`` lists library version differences between writer and loader.
    """

    ref: ArtifactRef
    manifest: Mapping[str, Any]
    input_schema: InputSchema
    predictor: Predictor
    size_bytes: int
    memory_bytes: int
    load_seconds: float
    extra_files: Mapping[str, bytes] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # Pickled other versions of the model by name (manifest ``variants``): unpickled only
    # when asked for (:meth:`variant_predictor`).
    variant_files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def variants(self) -> Mapping[str, Mapping[str, Any]]:
        """Facts about the other versions of the model (``write_bundle``'s ``variants``)."""
        return self.manifest.get("variants", {})

    @property
    def model_variant(self) -> Mapping[str, Any]:
        """Facts about the main model as a variant (name, estimated quality, latency)."""
        return self.manifest.get("model", {}).get("variant", {})

    def variant_predictor(self, name: str) -> Predictor:
        """The predictor of variant ``name`` (unpickled now).

        Raises:
            NotFound: the bundle has no such variant.
        """
        data = self.variant_files.get(name)
        if data is None:
            raise NotFound(
                f"model bundle '{self.ref.key}' has no variant {name!r}",
                reason="BUNDLE_VARIANT_NOT_FOUND",
                metadata={"variant": name},
            )
        return Predictor(
            joblib.load(io.BytesIO(data)),
            self.input_schema,
            task=self.task,
            classes=self.classes,
        )

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def classes(self) -> list[Any]:
        return list(self.manifest.get("classes") or [])

    @property
    def target(self) -> str:
        return str(self.manifest.get("target", ""))

    @property
    def training_stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Per-feature drift baselines (see :mod:`atlas_core.bundles._stats`)."""
        return self.manifest["training_stats"]["features"]

    @property
    def prediction_stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Baselines of the model outputs: ``label`` and ``score`` (classifiers) or ``value``."""
        return self.manifest.get("prediction_stats", {}).get("outputs", {})

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def lineage(self) -> Mapping[str, Any]:
        return self.manifest.get("lineage", {})


def load_bundle(
    store: ArtifactStore, ref_or_key: KeyOrRef, *, trust: BundleTrust, verify: bool = True
) -> LoadedBundle:
    """Download, verify and unpickle the bundle at ``ref_or_key``.

    First the manifest's signature must be accepted by ``trust`` (always, whatever
    ``verify``); then, with ``verify`` (the default), the artifact's sha256/size (checked by
    the store) and every member's sha256/size (against the manifest) must match. Only then
    is anything unpickled.
    Passing an :class:`ArtifactRef` also checks the key still holds that artifact. The bundle
    is streamed, never written to local disk. Only ``atlas_core`` and the model's own
    libraries are imported.

    Raises:
        NotFound: no artifact at the key.
        FailedPrecondition: ``BUNDLE_UNSIGNED``, ``BUNDLE_SIGNER_UNTRUSTED`` or
            ``BUNDLE_SIGNATURE_INVALID`` (see :meth:`BundleTrust.check`).
        DataLoss: reason ``BUNDLE_CHECKSUM_MISMATCH`` when any checksum or size differs (the
            store's reason is kept in ``metadata["store_reason"]``), ``BUNDLE_MALFORMED``
            when it is not a bundle.
        FailedPrecondition: ``BUNDLE_FORMAT_UNSUPPORTED`` (written by a newer ATLAS).
        plus the store's Unavailable / PermissionDenied / Unauthenticated.
    """
    started = time.perf_counter()
    key = ref_or_key.key if isinstance(ref_or_key, ArtifactRef) else ref_or_key
    try:
        with store.open_stream(ref_or_key, verify=verify) as stream:
            reader = ChunkReader(iter(stream))
            try:
                manifest, contents = read_archive(
                    cast(IO[bytes], reader), key=key, verify=verify, trust=trust
                )
            except (DataLoss, FailedPrecondition):
                # A corrupt artifact often surfaces as a bad member, tar or signature first:
                # let the store's own checksum verdict take precedence when it has one.
                reader.drain()
                raise
            reader.drain()  # the store checks the artifact's sha256 after the last chunk
            ref = stream.ref
    except DataLoss as err:
        if err.reason in (CHECKSUM_REASON, "BUNDLE_MALFORMED"):
            raise
        raise DataLoss(
            f"model bundle '{key}' failed verification: {err.message}; refusing to load it",
            reason=CHECKSUM_REASON,
            metadata={**err.metadata, "store_reason": err.reason},
        ) from err
    model_member = manifest["model"].get("member", "")
    if model_member not in contents:
        raise DataLoss(
            f"model bundle '{key}' is malformed: model member {model_member!r} is missing",
            reason="BUNDLE_MALFORMED",
            metadata={"key": key},
        )
    model = joblib.load(io.BytesIO(contents[model_member]))
    schema = InputSchema.from_dict(manifest["input_schema"])
    predictor = Predictor(
        model, schema, task=manifest["task"], classes=manifest.get("classes") or []
    )
    extras = {
        name[len(EXTRA_PREFIX) :]: data
        for name, data in contents.items()
        if name.startswith(EXTRA_PREFIX)
    }
    variant_files = {
        name: contents[facts.get("member", "")]
        for name, facts in (manifest.get("variants") or {}).items()
        if facts.get("member", "") in contents
    }
    return LoadedBundle(
        ref=ref,
        manifest=manifest,
        input_schema=schema,
        predictor=predictor,
        size_bytes=ref.size,
        memory_bytes=sum(len(data) for data in contents.values()),
        load_seconds=time.perf_counter() - started,
        extra_files=extras,
        variant_files=variant_files,
        warnings=tuple(version_warnings(manifest.get("libraries", {}))),
    )


def read_manifest(store: ArtifactStore, ref_or_key: KeyOrRef) -> dict[str, Any]:
    """The manifest alone, reading only the head of the artifact (no model is loaded).

    For registries and deploy-time checks (schema, task, size, lineage) before a lazy load.
    The artifact checksum is NOT verified (that needs every byte): :func:`load_bundle`
    verifies everything before a model is used.

    Raises:
        NotFound, DataLoss (``BUNDLE_MALFORMED``), FailedPrecondition
        (``BUNDLE_FORMAT_UNSUPPORTED``), and the store's errors.
    """
    key = ref_or_key.key if isinstance(ref_or_key, ArtifactRef) else ref_or_key
    if not key:
        raise InvalidArgument("a bundle key is required", reason="INVALID_KEY")
    with store.open_stream(ref_or_key, verify=False, chunk_size=64 * 1024) as stream:
        return _read_manifest_only(iter(stream), key=key)

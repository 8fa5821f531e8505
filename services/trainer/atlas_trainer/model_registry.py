"""The trainer's side of the serving registry, over the serving service's gRPC contract only:
resolving the model a job replaces (to warm-start from its study and record it as the new
bundle's parent) and registering a finished job's bundle under an alias.

Registration is idempotent by a request id derived from the job id: serving returns the
version first registered for it, so a resumed job (or a retry after a lost reply) registers
its bundle exactly once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import (
    AtlasError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from atlas_trainer.runtime import TrainerRuntime

log = logging.getLogger("atlas.trainer.registry")
DEFAULT_ALIAS = "candidate"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,127}$")
# Errors worth another call: the registry is down or slow. Anything else (a bad name, a
# bundle serving refuses) fails the same way every time.
_TRANSIENT = (Unavailable, DeadlineExceeded)


def model_ref_text(ref: common_pb2.ModelRef) -> str:
    """``name:3``, ``name@alias`` or ``name`` (latest), as the CLI writes model references."""
    which = ref.WhichOneof("selector")
    if which == "alias":
        return f"{ref.model_name}@{ref.alias}"
    if which == "version" and ref.version:
        return f"{ref.model_name}:{ref.version}"
    return ref.model_name


def check_register_options(options: pb.RegisterModelOptions) -> None:
    """INVALID_ARGUMENT unless the name and alias are ones the registry accepts."""
    if not _NAME.match(options.model_name):
        raise InvalidArgument(
            f"register.model_name {options.model_name!r} must match [a-z][a-z0-9-]*",
            reason="BAD_REGISTER",
            metadata={"field": "register.model_name"},
        )
    alias = options.alias or DEFAULT_ALIAS
    if not _NAME.match(alias):
        raise InvalidArgument(
            f"register.alias {alias!r} must match [a-z][a-z0-9-]* (not a number)",
            reason="BAD_REGISTER",
            metadata={"field": "register.alias"},
        )


@dataclass(frozen=True)
class BaseModel:
    """The resolved model version a job replaces, and the trainer study behind it (empty
    when its bundle was not trained by a trainer job)."""

    model_name: str
    version: int
    study_name: str
    job_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "study_name": self.study_name,
            "job_id": self.job_id,
        }


def resolve_base_model(rt: TrainerRuntime, ref: common_pb2.ModelRef) -> BaseModel:
    """GetModelVersion through serving, then the study from the version's lineage.

    Raises:
        NotFound (BASE_MODEL_NOT_FOUND): no such model, version or alias.
        Unavailable (SERVING_UNAVAILABLE): serving could not be reached.
        FailedPrecondition (NO_SERVING_SERVICE): no serving service configured;
            (SERVING_AUTH_REFUSED) serving refused the trainer's token (not the caller's).
    """
    named = model_ref_text(ref)
    try:
        with rt.serving_client() as client:
            found = client.get_version(
                ref.model_name,
                ref.version if ref.WhichOneof("selector") == "version" else 0,
                ref.alias if ref.WhichOneof("selector") == "alias" else "",
            )
    except NotFound as exc:
        raise NotFound(
            f"replaces_model {named}: {exc.message}",
            reason="BASE_MODEL_NOT_FOUND",
            metadata={"model": named},
        ) from None
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"replaces_model {named}: {exc.message}", reason="BAD_MODEL_REF"
        ) from None
    except (Unauthenticated, PermissionDenied) as exc:
        raise FailedPrecondition(
            f"the serving service refused this trainer's token while resolving replaces_model "
            f"{named} ({exc.message}): fix ATLAS_TRAINER_SERVING__TOKEN",
            reason="SERVING_AUTH_REFUSED",
        ) from None
    except _TRANSIENT as exc:
        raise Unavailable(
            f"the serving service ({rt.settings.serving.target}) could not be reached to "
            f"resolve replaces_model {named}: {exc.message}; nothing was stored, retry",
            reason="SERVING_UNAVAILABLE",
        ) from None
    trial = next((p.trial for p in found.lineage.parents if p.HasField("trial")), None)
    return BaseModel(
        found.ref.model_name,
        found.ref.version,
        trial.study_name if trial is not None else "",
        trial.job_id if trial is not None else found.lineage.produced_by.job_id,
    )


def base_model_parent(base: dict[str, Any]) -> common_pb2.LineageParent:
    return common_pb2.LineageParent(
        role="base_model",
        model=common_pb2.ModelRef(model_name=base["model_name"], version=int(base["version"])),
    )


def register_request_id(job_id: str) -> str:
    """The same for every attempt of a job: serving registers it once."""
    return f"trainer-job-{job_id}-register"


def register_bundle(
    rt: TrainerRuntime,
    job_id: str,
    options: pb.RegisterModelOptions,
    bundle: dict[str, Any],
    base: dict[str, Any] | None,
    *,
    report: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    """Register ``bundle`` as a new version of ``options.model_name`` with its alias, the
    replaced model as a "base_model" parent; transient failures are retried with
    exponential backoff for ``jobs.register_retry_seconds``. Never raises: the outcome
    (REGISTERED with the version, or FAILED with the error) is returned for the job result."""
    alias = options.alias or DEFAULT_ALIAS
    ref = common_pb2.ArtifactRef(
        uri=bundle["uri"], sha256=bundle["sha256"], size_bytes=int(bundle["size"])
    )
    jobs = rt.settings.jobs
    give_up_at = time.monotonic() + jobs.register_retry_seconds
    wait, attempts = 1.0, 0
    outcome: dict[str, Any] = {"model_name": options.model_name, "alias": alias}
    while True:
        attempts += 1
        try:
            with rt.serving_client() as client:
                version = client.register(
                    options.model_name,
                    ref,
                    # Pointed in the transaction that creates the version: never a version
                    # without its alias, and a replay does not move an alias moved since.
                    aliases=[alias],
                    description=options.description,
                    parents=[base_model_parent(base)] if base else [],
                    labels={"trainer_job_id": job_id},
                    request_id=register_request_id(job_id),
                )
        except AtlasError as exc:
            error = f"{exc.code.value}: {exc.message}"
            retry = isinstance(exc, _TRANSIENT) and not should_stop()
            if not retry or time.monotonic() + wait > give_up_at:
                log.warning(
                    "job %s: registration failed (%d attempts): %s", job_id, attempts, error
                )
                return {**outcome, "state": "FAILED", "attempts": attempts, "error": error}
            report(
                f"registering in serving: attempt {attempts} failed ({error}); retry in {wait:.0f}s"
            )
            time.sleep(wait)
            wait = min(wait * 2, jobs.register_backoff_max_seconds)
            continue
        return {
            **outcome,
            "state": "REGISTERED",
            "version": version.ref.version,
            "attempts": attempts,
        }

"""Typed settings of the annotator web app (env prefix ATLAS_LABELING_WEB_)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from atlas_core.config import S3Settings, StrictModel, TlsSettings
from atlas_core.web import ServiceTarget


class LabelingTarget(ServiceTarget):
    """How to reach the labeling service (every call carries the signed-in person's token)."""

    target: str = "127.0.0.1:7104"


class LabelingWebSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = 7180
    labeling: LabelingTarget = Field(default_factory=LabelingTarget)
    # Item images are read from the object store and served by the app (never a direct S3
    # URL to the browser): the store the labeling service writes its items to.
    s3: S3Settings = Field(default_factory=S3Settings)
    # Signs session cookies and CSRF tokens. Unset: a random one per process (sessions end
    # when the app restarts, and replicas cannot share them).
    session_secret: SecretStr | None = None
    session_max_age_s: int = 12 * 3600
    # HTTPS for the app itself (cookies are then sent over HTTPS only).
    tls: TlsSettings = Field(default_factory=TlsSettings)
    # Lease heartbeat period bounds; the period is a third of the project's lease.
    heartbeat_min_s: float = 1.0
    heartbeat_max_s: float = 60.0
    # Per-token gRPC channels kept open (least recently used ones are closed).
    max_clients: int = 64
    log_level: str = "INFO"

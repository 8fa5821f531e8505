"""Typed settings of the annotator web app (env prefix ATLAS_LABELING_WEB_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from atlas_core.config import S3Settings, StrictModel, TlsSettings
from atlas_core.rpc.channel import ClientSettings


class LabelingTarget(StrictModel):
    """How to reach the labeling service. There is no service token: every call carries the
    signed-in person's own bearer token."""

    target: str = "127.0.0.1:7104"
    ca_file: Path | None = None  # TLS to the service when set
    cert_file: Path | None = None  # mTLS client certificate
    key_file: Path | None = None
    server_name_override: str | None = None
    timeout_s: float = 30.0

    def client_settings(self, token: str) -> ClientSettings:
        return ClientSettings(
            target=self.target,
            token=SecretStr(token),
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            server_name_override=self.server_name_override,
        )


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

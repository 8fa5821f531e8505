"""Typed settings of the web console (env prefix ATLAS_CONSOLE_)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from atlas_core.config import S3Settings, StrictModel, TlsSettings
from atlas_core.web import ServiceTarget


class ConsoleSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = 7181
    data: ServiceTarget = Field(default_factory=lambda: ServiceTarget(target="127.0.0.1:7101"))
    trainer: ServiceTarget = Field(default_factory=lambda: ServiceTarget(target="127.0.0.1:7102"))
    serving: ServiceTarget = Field(default_factory=lambda: ServiceTarget(target="127.0.0.1:7103"))
    # Asked by the lineage page only, for the nodes these services own.
    labeling: ServiceTarget = Field(default_factory=ServiceTarget)
    graph: ServiceTarget = Field(default_factory=ServiceTarget)
    # Training report plots are artifacts in the object store: the console reads them and
    # serves them itself (the browser never gets an S3 URL or key).
    s3: S3Settings = Field(default_factory=S3Settings)
    # Signs session cookies and CSRF tokens. Unset: a random one per process.
    session_secret: SecretStr | None = None
    session_max_age_s: int = 12 * 3600
    tls: TlsSettings = Field(default_factory=TlsSettings)
    # How often a running job's page asks for its progress.
    poll_s: float = 2.0
    # Per-token sets of gRPC channels kept open (least recently used ones are closed).
    max_clients: int = 64
    log_level: str = "INFO"

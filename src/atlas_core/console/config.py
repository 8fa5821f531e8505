"""Typed settings of the web console (env prefix ATLAS_CONSOLE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from atlas_core.config import S3Settings, StrictModel, TlsSettings
from atlas_core.rpc.channel import ClientSettings


class ServiceTarget(StrictModel):
    """How to reach one service. There is no service token: every call carries the
    signed-in person's own bearer token. An empty target means the service is not part of
    this suite; its pages then say so."""

    target: str = ""
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

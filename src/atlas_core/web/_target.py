"""How a web app reaches one service (typed settings shared by the annotator UI and the console)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from atlas_core.config import StrictModel
from atlas_core.rpc.channel import ClientSettings


class ServiceTarget(StrictModel):
    """How to reach one service. There is no service token: every call carries the
    signed-in person's own bearer token. An empty target means the service is not part of
    this suite; the pages that need it then say so."""

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

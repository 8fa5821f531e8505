"""`python -m atlas_core.console`: serve the web console (settings from ATLAS_CONSOLE_* and/or
ATLAS_CONSOLE_CONFIG)."""

from __future__ import annotations

import os
import sys

from atlas_core.config import load_settings
from atlas_core.console.config import ConsoleSettings
from atlas_core.errors import AtlasError
from atlas_core.log import configure_logging

ENV_PREFIX = "ATLAS_CONSOLE"


def main() -> None:
    try:
        settings = load_settings(ConsoleSettings, env_prefix=ENV_PREFIX, env=os.environ)
        configure_logging(settings.log_level, service="console")
        import uvicorn

        from atlas_core.console.app import create_app

        app = create_app(settings)
    except AtlasError as exc:
        print(f"atlas-console: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    tls = settings.tls
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ssl_certfile=str(tls.cert_file) if tls.enabled else None,
        ssl_keyfile=str(tls.key_file) if tls.enabled else None,
        access_log=False,
    )


if __name__ == "__main__":
    main()

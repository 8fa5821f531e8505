"""The entry point every ATLAS web app shares: typed settings from the environment, JSON
logging, the app, uvicorn (with TLS when configured); a configuration error is one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from atlas_core.config import load_settings
from atlas_core.errors import AtlasError
from atlas_core.log import configure_logging

S = TypeVar("S", bound=BaseModel)


def serve_web_app(
    settings_type: type[S],
    *,
    env_prefix: str,
    name: str,
    create_app: Callable[[S], Any],
) -> None:
    """Load ``settings_type`` from ``<env_prefix>_*`` (and ``<env_prefix>_CONFIG``), build the
    app with ``create_app`` and serve it until stopped. The settings have ``host``, ``port``,
    ``log_level`` and ``tls`` (``enabled``, ``cert_file``, ``key_file``)."""
    try:
        settings: Any = load_settings(settings_type, env_prefix=env_prefix, env=os.environ)
        configure_logging(settings.log_level, service=name)
        app = create_app(settings)
    except AtlasError as exc:
        print(f"atlas-{name}: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    import uvicorn

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

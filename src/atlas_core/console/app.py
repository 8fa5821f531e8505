"""The console app: shared sign-in and pages from atlas_core.web, the console's pages from
pages.py, its own templates and stylesheet."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from atlas_core.console.clients import ClientPool
from atlas_core.console.config import ConsoleSettings
from atlas_core.console.pages import Pages
from atlas_core.errors import FailedPrecondition
from atlas_core.reasons import SharedReason
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_core.web import SessionCodec, WebAppConfig, create_web_app

HERE = Path(__file__).parent
log = logging.getLogger("atlas.console")


def create_app(
    settings: ConsoleSettings,
    *,
    pool: ClientPool | None = None,
    store: ArtifactStore | None = None,
) -> Any:
    """The ASGI app. ``pool`` and ``store`` default to ones built from ``settings``."""
    pool = pool or ClientPool(settings)
    store = store or open_artifact_store(settings.s3)
    if settings.session_secret is not None:
        secret = settings.session_secret.get_secret_value().encode()
    else:
        log.warning("no session_secret configured: sessions end when the app restarts")
        secret = secrets.token_bytes(32)

    def verify(token: str) -> str:
        # A read call of each configured service proves the token (UNAUTHENTICATED
        # otherwise); one that answers is enough to sign in.
        clients = pool.get(token)
        calls = [
            (settings.trainer.target, lambda: clients.trainer.list()),
            (settings.serving.target, lambda: clients.serving.list_endpoints()),
            (settings.data.target, lambda: clients.data.list_datasets()),
        ]
        for target, call in calls:
            if target:
                call()
                return ""
        raise FailedPrecondition(
            "the console has no service to check the token with: set ATLAS_CONSOLE_TRAINER__TARGET",
            reason=SharedReason.FAILED_PRECONDITION,
        )

    config = WebAppConfig(
        title="ATLAS console",
        codec=SessionCodec(secret, max_age_s=settings.session_max_age_s),
        verify_token=verify,
        template_dirs=[HERE / "templates"],
        static_dirs=[("/static/console", HERE / "static")],
        cookie_secure=settings.tls.enabled,
    )
    return create_web_app(config, lambda kit: Pages(kit, pool, store, settings).routes())

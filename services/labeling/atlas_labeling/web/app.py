"""The annotator web app: shared sign-in and pages from atlas_core.web, the labeling pages
from pages.py, the app's own templates and script."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_core.web import SessionCodec, WebAppConfig, create_web_app
from atlas_labeling.web.clients import ClientPool
from atlas_labeling.web.config import LabelingWebSettings
from atlas_labeling.web.pages import Pages

HERE = Path(__file__).parent
log = logging.getLogger("atlas.labeling.web")

REASON_MESSAGES = {
    "LEASE_EXPIRED": (
        "Your lease on this item expired, so it went back to the queue and your answer was "
        "not saved. Get a new item to continue."
    ),
    "NOT_ASSIGNEE": "This item is assigned to someone else.",
}


def create_app(
    settings: LabelingWebSettings,
    *,
    pool: ClientPool | None = None,
    store: ArtifactStore | None = None,
) -> Any:
    """The ASGI app. ``pool`` and ``store`` default to ones built from ``settings``."""
    pool = pool or ClientPool(settings.labeling, max_clients=settings.max_clients)
    store = store or open_artifact_store(settings.s3)
    if settings.session_secret is not None:
        secret = settings.session_secret.get_secret_value().encode()
    else:
        log.warning("no session_secret configured: sessions end when the app restarts")
        secret = secrets.token_bytes(32)

    def verify(token: str) -> str:
        # Any read call proves the token to the service (UNAUTHENTICATED otherwise).
        pool.get(token).list_projects()
        return ""

    config = WebAppConfig(
        title="ATLAS labeling",
        codec=SessionCodec(secret, max_age_s=settings.session_max_age_s),
        verify_token=verify,
        template_dirs=[HERE / "templates"],
        static_dirs=[("/static/labeling", HERE / "static")],
        cookie_secure=settings.tls.enabled,
        reason_messages=REASON_MESSAGES,
    )
    return create_web_app(config, lambda kit: Pages(kit, pool, store, settings).routes())

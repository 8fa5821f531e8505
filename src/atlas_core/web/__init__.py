"""What the ATLAS web apps share (the annotator UI and the console): a base template and CSS,
vendored htmx (static/README.md), bearer-token sign-in into a signed HttpOnly cookie, CSRF
tokens, and the mapping of service errors to pages. The apps are gRPC clients of the services
and nothing more: no business logic lives here."""

from atlas_core.web._app import (
    PUBLIC_PATHS,
    SECURITY_HEADERS,
    SHARED_STATIC,
    SessionGuard,
    TokenVerifier,
    WebAppConfig,
    WebKit,
    create_web_app,
    is_htmx,
    safe_next,
)
from atlas_core.web._errors import ErrorPage, error_page
from atlas_core.web._main import serve_web_app
from atlas_core.web._session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Session,
    SessionCodec,
)
from atlas_core.web._target import ServiceTarget

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "PUBLIC_PATHS",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "SHARED_STATIC",
    "SIGNIN_COOKIE",
    "ErrorPage",
    "Session",
    "SessionCodec",
    "ServiceTarget",
    "SessionGuard",
    "TokenVerifier",
    "WebAppConfig",
    "WebKit",
    "create_web_app",
    "error_page",
    "is_htmx",
    "safe_next",
    "serve_web_app",
]

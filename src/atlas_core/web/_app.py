"""What every ATLAS web app is built from: a Starlette app with token sign-in, a session guard
(nothing but the sign-in page, static files and /healthz is served without a valid session;
every POST must carry the session's CSRF token), security headers, Jinja2 templates layered
over the shared ones, and one mapping of service errors to pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atlas_core.errors import AtlasError, Unauthenticated
from atlas_core.web._errors import error_page
from atlas_core.web._session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Session,
    SessionCodec,
)

log = logging.getLogger("atlas.web")
SHARED_DIR = Path(__file__).parent
SHARED_STATIC = "/static/core"
# /favicon.ico: browsers ask for it on their own; a redirect to the sign-in page would
# replace the sign-in form's nonce cookie under the open form.
PUBLIC_PATHS = frozenset({"/signin", "/healthz", "/favicon.ico"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# No inline script or style anywhere, so the policy can forbid them: an injected <script>
# would not run even if escaping failed somewhere.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
        "style-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}

# Checks a bearer token against the service (raising Unauthenticated / PermissionDenied /
# Unavailable); returns a short description of who the token is, for display.
TokenVerifier = Callable[[str], str]


@dataclass
class WebAppConfig:
    title: str
    codec: SessionCodec
    verify_token: TokenVerifier
    template_dirs: Sequence[Path] = ()
    # (URL prefix, directory) of the app's own static files.
    static_dirs: Sequence[tuple[str, Path]] = ()
    # Send cookies only over HTTPS (set when the app is served behind TLS).
    cookie_secure: bool = False
    # Friendlier messages for particular error reasons.
    reason_messages: dict[str, str] = field(default_factory=dict)


def safe_next(target: str | None) -> str:
    """A local path to return to after sign-in; anything else (other hosts) becomes "/"."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


class WebKit:
    """The shared pieces an app's handlers use: rendering, sessions, errors, redirects."""

    def __init__(self, config: WebAppConfig) -> None:
        self.config = config
        self.codec = config.codec
        loader = jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(str(d)) for d in config.template_dirs]
            + [jinja2.FileSystemLoader(str(SHARED_DIR / "templates"))]
        )
        env = jinja2.Environment(loader=loader, autoescape=True)
        self.templates = Jinja2Templates(env=env)

    # ---- rendering -----------------------------------------------------------------------

    def session(self, request: Request) -> Session:
        session = request.scope.get("state", {}).get("session")
        if session is None:  # the guard lets no such request through
            raise Unauthenticated("no session", reason="NO_SESSION")
        return session

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        session = request.scope.get("state", {}).get("session")
        ctx = {
            "app_title": self.config.title,
            "signed_in": session is not None,
            "csrf_token": self.codec.csrf_token(session) if session else "",
            "core_static": SHARED_STATIC,
        }
        ctx.update(context or {})
        return self.templates.TemplateResponse(
            request, template, ctx, status_code=status, headers=headers
        )

    def redirect(self, request: Request, url: str) -> Response:
        """A redirect that works for page loads and htmx requests alike."""
        if is_htmx(request):
            return Response(status_code=200, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    def to_signin(self, request: Request, *, expired: bool = False) -> Response:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if is_htmx(request):
            current = urlsplit(request.headers.get("hx-current-url", "/"))
            back = current.path + (f"?{current.query}" if current.query else "")
        url = f"/signin?next={quote(safe_next(back), safe='/')}"
        if expired:
            url += "&expired=1"
        if is_htmx(request):
            response: Response = Response(status_code=401, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def error_response(self, request: Request, exc: Exception) -> Response:
        """Service errors as pages (or, for htmx requests, as a message in #flash)."""
        if not isinstance(exc, AtlasError):
            log.exception("unexpected error serving %s", request.url.path, exc_info=exc)
            exc = AtlasError("unexpected error")
        if isinstance(exc, Unauthenticated):
            return self.to_signin(request, expired=True)
        page = error_page(exc, self.config.reason_messages)
        if is_htmx(request):
            return self.render(
                request,
                "_flash.html",
                {"error": page},
                status=page.status,
                headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
            )
        return self.render(request, "error.html", {"error": page}, status=page.status)

    # ---- sign-in -------------------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        # Keep a nonce the browser already has: two open sign-in tabs both stay valid.
        nonce = request.cookies.get(SIGNIN_COOKIE) or self.codec.new_signin_nonce()
        response = self.render(
            request,
            "signin.html",
            {
                "signin_csrf": self.codec.signin_csrf(nonce),
                "next": safe_next(request.query_params.get("next")),
                "expired": request.query_params.get("expired") == "1",
                "problem": "",
            },
        )
        self.set_cookie(response, SIGNIN_COOKIE, nonce, max_age=3600)
        return response

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        nonce = request.cookies.get(SIGNIN_COOKIE)
        if not self.codec.signin_csrf_ok(nonce, str(form.get(CSRF_FIELD, ""))):
            return PlainTextResponse("sign-in form expired or forged: reload it", 403)
        token = str(form.get("token", "")).strip()
        target = safe_next(str(form.get("next", "/")))
        problem = ""
        if not token:
            problem = "Enter your access token."
        else:
            try:
                await run_in_threadpool(self.config.verify_token, token)
            except AtlasError as exc:
                problem = error_page(exc).message
                if isinstance(exc, Unauthenticated):
                    problem = "This token is not valid for this service."
        if problem:
            fresh = self.codec.new_signin_nonce()
            response = self.render(
                request,
                "signin.html",
                {
                    "signin_csrf": self.codec.signin_csrf(fresh),
                    "next": target,
                    "expired": False,
                    "problem": problem,
                },
                status=401,
            )
            self.set_cookie(response, SIGNIN_COOKIE, fresh, max_age=3600)
            return response
        session = self.codec.new_session(token)
        response = RedirectResponse(target, status_code=303)
        self.set_cookie(
            response, SESSION_COOKIE, self.codec.encode(session), max_age=self.codec.max_age_s
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        return response

    async def signout(self, request: Request) -> Response:
        response = self.redirect(request, "/signin")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def set_cookie(self, response: Response, name: str, value: str, *, max_age: int) -> None:
        """An HttpOnly, SameSite=Strict cookie (Secure when the app is served over HTTPS)."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.config.cookie_secure,
        )


class SessionGuard:
    """ASGI middleware: a valid session for everything but public paths, the CSRF token on
    every state-changing request, and the security headers on every response."""

    def __init__(self, app: ASGIApp, kit: WebKit) -> None:
        self.app = app
        self.kit = kit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS.items():
                    if key.encode() not in present:
                        headers.append((key.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        request = Request(scope)
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send_with_headers)
            return
        session = self.kit.codec.decode(request.cookies.get(SESSION_COOKIE))
        if session is None:
            await self.kit.to_signin(request)(scope, receive, send_with_headers)
            return
        if scope["method"] not in _SAFE_METHODS and not self.kit.codec.csrf_ok(
            session, request.headers.get(CSRF_HEADER)
        ):
            refusal = PlainTextResponse("missing or wrong CSRF token: reload the page", 403)
            await refusal(scope, receive, send_with_headers)
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send_with_headers)


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_web_app(config: WebAppConfig, routes: Callable[[WebKit], Sequence[BaseRoute]]) -> Any:
    """The app: shared sign-in/out, static files and health, then ``routes(kit)``."""
    kit = WebKit(config)
    shared = [
        Route("/healthz", _healthz),
        Route("/signin", kit.signin_form, methods=["GET"]),
        Route("/signin", kit.signin, methods=["POST"]),
        Route("/signout", kit.signout, methods=["POST"]),
        Mount(SHARED_STATIC, StaticFiles(directory=SHARED_DIR / "static"), name="core_static"),
    ]
    mounts: list[BaseRoute] = [
        Mount(prefix, StaticFiles(directory=directory)) for prefix, directory in config.static_dirs
    ]
    app = Starlette(
        routes=[*shared, *mounts, *routes(kit)],
        exception_handlers={
            AtlasError: kit.error_response,
            Exception: kit.error_response,
        },
    )
    app.state.kit = kit
    return SessionGuard(app, kit)

"""The shared web kit: signed sessions, CSRF, the sign-in flow, the session guard and the
error pages (an app built from it, served by Starlette's test client)."""

from __future__ import annotations

import re

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from atlas_core.errors import FailedPrecondition, Internal, NotFound, Unauthenticated
from atlas_core.web import (
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SessionCodec,
    WebAppConfig,
    WebKit,
    create_web_app,
    error_page,
    safe_next,
)

SECRET = b"unit-test-secret-0123456789abcdef"
GOOD = "good-token"


def test_session_cookie_round_trip_and_tampering() -> None:
    now = [1_000_000.0]
    codec = SessionCodec(SECRET, max_age_s=60, clock=lambda: now[0])
    session = codec.new_session("tok")
    raw = codec.encode(session)
    assert codec.decode(raw) == session
    body, _, mac = raw.rpartition(".")
    assert codec.decode(body + "." + mac[:-2] + "AA") is None
    assert codec.decode(raw.replace(body, body[:-2] + "xy")) is None
    assert SessionCodec(b"another-secret-0123456789").decode(raw) is None
    assert codec.decode("") is None and codec.decode("garbage") is None
    now[0] += 61
    assert codec.decode(raw) is None  # too old


def test_csrf_tokens_belong_to_one_session() -> None:
    codec = SessionCodec(SECRET)
    one, two = codec.new_session("a"), codec.new_session("a")
    assert codec.csrf_ok(one, codec.csrf_token(one))
    assert not codec.csrf_ok(one, codec.csrf_token(two))
    assert not codec.csrf_ok(one, "") and not codec.csrf_ok(one, None)
    nonce = codec.new_signin_nonce()
    assert codec.signin_csrf_ok(nonce, codec.signin_csrf(nonce))
    assert not codec.signin_csrf_ok(None, codec.signin_csrf(nonce))
    with pytest.raises(ValueError):
        SessionCodec(b"short")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/p/x/next", "/p/x/next"),
        ("", "/"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_safe_next_stays_on_this_site(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


def test_error_pages_keep_service_messages_but_hide_internal_ones() -> None:
    page = error_page(NotFound("item 'x' does not exist", reason="ITEM_NOT_FOUND"))
    assert (page.status, page.message) == (404, "item 'x' does not exist")
    internal = error_page(Internal("KeyError at /srv/app.py:12"))
    assert internal.status == 500 and "app.py" not in internal.message
    expired = error_page(
        FailedPrecondition("lease of asg-1 expired", reason="LEASE_EXPIRED"),
        {"LEASE_EXPIRED": "Your lease expired."},
    )
    assert (expired.status, expired.message) == (409, "Your lease expired.")


def _verify(token: str) -> str:
    if token != GOOD:
        raise Unauthenticated("invalid bearer token", reason="INVALID_TOKEN")
    return ""


def _app() -> TestClient:
    def routes(kit: WebKit) -> list[Route]:
        async def home(request: Request) -> Response:
            return kit.render(request, "error.html", {"error": None})

        async def act(request: Request) -> Response:
            return PlainTextResponse("done")

        async def gone(request: Request) -> Response:
            raise FailedPrecondition("the lease expired", reason="LEASE_EXPIRED")

        async def revoked(request: Request) -> Response:
            raise Unauthenticated("token revoked")

        return [
            Route("/", home),
            Route("/act", act, methods=["POST"]),
            Route("/gone", gone, methods=["POST"]),
            Route("/revoked", revoked),
        ]

    config = WebAppConfig(title="Test app", codec=SessionCodec(SECRET), verify_token=_verify)
    return TestClient(create_web_app(config, routes), base_url="http://testserver")


def _sign_in(client: TestClient, token: str) -> Response:
    form = client.get("/signin?next=/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    return client.post(
        "/signin",
        data={"csrf_token": csrf, "token": token, "next": "/"},
        follow_redirects=False,
    )


def test_nothing_is_served_without_a_session() -> None:
    client = _app()
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/"
    htmx = client.post("/act", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/signin")
    assert client.get("/healthz").text == "ok"
    assert client.get("/static/core/htmx.min.js").status_code == 200
    for key in SECURITY_HEADERS:
        assert key in page.headers


def test_sign_in_checks_the_token_and_its_form() -> None:
    client = _app()
    assert _sign_in(client, "bad").status_code == 401
    forged = client.post("/signin", data={"csrf_token": "x", "token": GOOD})
    assert forged.status_code == 403
    ok = _sign_in(client, GOOD)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(SESSION_COOKIE) and "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert GOOD not in client.get("/").text


def test_state_changing_requests_need_the_csrf_token() -> None:
    client = _app()
    _sign_in(client, GOOD)
    csrf = re.search(r'data-csrf="([^"]+)"', client.get("/").text).group(1)
    assert client.post("/act").status_code == 403
    assert client.post("/act", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/act", headers={"X-CSRF-Token": csrf}).text == "done"


def test_service_errors_become_messages_and_revoked_tokens_sign_out() -> None:
    client = _app()
    _sign_in(client, GOOD)
    csrf = re.search(r'data-csrf="([^"]+)"', client.get("/").text).group(1)
    gone = client.post("/gone", headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
    assert gone.status_code == 409 and gone.headers["HX-Retarget"] == "#flash"
    assert 'data-reason="LEASE_EXPIRED"' in gone.text and "the lease expired" in gone.text
    page = client.get("/revoked", follow_redirects=False)
    assert page.status_code == 303 and "expired=1" in page.headers["location"]
    assert SESSION_COOKIE in page.headers["set-cookie"]  # deleted

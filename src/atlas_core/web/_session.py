"""Signed session cookies and CSRF tokens for the web apps, free of any web framework.

The session cookie carries the user's bearer token (the web app calls the services with it,
so the services decide who the user is and what they may do), a random session id and the
time of sign-in, signed with HMAC-SHA256 under the app's secret. It is set HttpOnly and
SameSite=Strict, so page scripts cannot read it and other sites cannot send it.

CSRF tokens are derived, not stored: HMAC(secret, session id). Every state-changing request
must echo it (header ``X-CSRF-Token``), which a cross-site form cannot do. The sign-in form,
which has no session yet, is protected the same way by a short-lived pre-session nonce
cookie (double submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "atlas_session"
SIGNIN_COOKIE = "atlas_signin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    token: str
    sid: str
    issued_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Encodes and checks session cookies and CSRF tokens. Thread-safe (immutable)."""

    def __init__(
        self,
        secret: bytes,
        *,
        max_age_s: int = 12 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        self._secret = secret
        self.max_age_s = max_age_s
        self._clock = clock

    def _mac(self, purpose: str, payload: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}|{payload}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    def new_session(self, token: str) -> Session:
        return Session(token=token, sid=secrets.token_urlsafe(16), issued_at=int(self._clock()))

    def encode(self, session: Session) -> str:
        body = _b64(
            json.dumps(
                {"t": session.token, "s": session.sid, "i": session.issued_at},
                separators=(",", ":"),
            ).encode()
        )
        return f"{body}.{self._mac('session', body)}"

    def decode(self, raw: str | None) -> Session | None:
        """The session in ``raw``, or None when it is missing, forged or too old."""
        if not raw or "." not in raw:
            return None
        body, _, mac = raw.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["t"]), str(data["s"]), int(data["i"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not session.token or self._clock() - session.issued_at > self.max_age_s:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.sid)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given or "", self.csrf_token(session))

    # ---- sign-in form (no session yet) ---------------------------------------------------

    @staticmethod
    def new_signin_nonce() -> str:
        return secrets.token_urlsafe(16)

    def signin_csrf(self, nonce: str) -> str:
        return self._mac("signin", nonce)

    def signin_csrf_ok(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or not given:
            return False
        return hmac.compare_digest(given, self.signin_csrf(nonce))

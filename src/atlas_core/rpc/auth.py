"""Bearer-token authentication and scope checks, free of grpc so it is unit-testable.

Scopes are ``<service>:read``, ``<service>:write``, ``<service>:*`` or ``*``; ``write``
implies ``read``. A method's required scope is derived from its name: ``Get``/``List``/
``Watch``/``Describe``/``Search``/``Predict``-style read RPCs need ``read``, everything else
``write``. Tokens are compared in constant time and never logged; logs name a token only by
a short fingerprint. The tokens file is re-read when it changes (checked at most every
``tokens_reload_seconds``), so tokens rotate without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from atlas_core.config import AuthSettings
from atlas_core.errors import ConfigError, PermissionDenied, Unauthenticated
from atlas_core.secret_files import read_private

log = logging.getLogger("atlas.auth")

# Always callable without a token: load balancers and orchestrators probe health anonymously.
PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health"})
ANY_VALID_TOKEN = ""
_READ_PREFIXES = ("Get", "List", "Watch", "Describe", "Search", "Predict", "Explain", "Stream")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe for logs."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def service_scope_name(full_service: str) -> str:
    """``atlas.data.v1.DataService`` -> ``data``; other services keep their full name."""
    parts = full_service.split(".")
    if len(parts) >= 4 and parts[0] == "atlas":
        return parts[1]
    return full_service


def required_scope(full_method: str) -> str | None:
    """Scope needed for ``/pkg.Service/Method``; None for public services and
    :data:`ANY_VALID_TOKEN` for reflection (schemas are for every authenticated caller)."""
    service, _, method = full_method.lstrip("/").partition("/")
    if service in PUBLIC_SERVICES:
        return None
    if service.startswith("grpc.reflection."):
        return ANY_VALID_TOKEN
    access = "read" if method.startswith(_READ_PREFIXES) else "write"
    return f"{service_scope_name(service)}:{access}"


def scope_allows(granted: Iterable[str], needed: str) -> bool:
    if needed == ANY_VALID_TOKEN:
        return True
    svc, _, access = needed.partition(":")
    for scope in granted:
        if scope in ("*", needed, f"{svc}:*"):
            return True
        if access == "read" and scope in (f"{svc}:write", "*:read"):
            return True
        if scope == f"*:{access}":
            return True
    return False


@dataclass(frozen=True)
class Principal:
    token_fingerprint: str
    scopes: frozenset[str]


class TokenAuthenticator:
    """Maps bearer tokens to scopes and decides whether a call may proceed.

    ``tokens`` are fixed; those of ``tokens_file`` are re-read when the file's size, mtime or
    inode changes (looked at no more than every ``reload_seconds``). A reload that fails (an
    unreadable, malformed or exposed file) keeps the previous tokens and logs why.
    """

    def __init__(
        self,
        tokens: Mapping[str, Iterable[str]],
        *,
        enabled: bool = True,
        tokens_file: Path | None = None,
        reload_seconds: float = 1.0,
    ) -> None:
        self.enabled = enabled
        # Keyed by digest: a dict lookup on hashes leaks nothing about the tokens' bytes, so
        # it is as safe as a constant-time compare and O(1) per call.
        self._fixed = {_digest(tok): frozenset(scopes) for tok, scopes in tokens.items()}
        self._file = tokens_file
        self._reload_seconds = reload_seconds
        self._file_state: tuple[int, ...] | None = None
        self._next_check = 0.0
        self._tokens = dict(self._fixed)
        if tokens_file is not None:
            self._file_state = _file_state(tokens_file)
            self._tokens = self._merged(read_tokens_file(tokens_file))
            self._next_check = time.monotonic() + reload_seconds
        if enabled and not self._tokens:
            raise ConfigError(
                "auth is enabled but no tokens are configured: set server.auth.tokens_file "
                "or server.auth.tokens, or set server.auth.enabled=false for local development"
            )

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenAuthenticator:
        return cls(
            settings.tokens,
            enabled=settings.enabled,
            tokens_file=settings.tokens_file,
            reload_seconds=settings.tokens_reload_seconds,
        )

    def _merged(self, from_file: Mapping[str, Iterable[str]]) -> dict[bytes, frozenset[str]]:
        return {**self._fixed, **{_digest(t): frozenset(s) for t, s in from_file.items()}}

    def reload_if_changed(self) -> bool:
        """Re-read the tokens file if it changed since it was read; True when it did."""
        if self._file is None:
            return False
        self._next_check = time.monotonic() + self._reload_seconds
        state = _file_state(self._file)
        if state == self._file_state:
            return False
        self._file_state = state  # a failed reload is reported once per change, not per call
        try:
            tokens = read_tokens_file(self._file)
        except ConfigError as exc:  # messages name the file and line, never a token
            log.error(
                "tokens file not reloaded; the previous tokens stay in force",
                extra={"error": exc.message},
            )
            return False
        self._tokens = self._merged(tokens)
        log.info("tokens file reloaded", extra={"path": str(self._file), "tokens": len(tokens)})
        return True

    def digests(self) -> dict[str, frozenset[str]]:
        """SHA-256 (hex) of each configured token -> its scopes: what an out-of-process
        verifier (the native online reader) needs, without the tokens themselves."""
        return {digest.hex(): scopes for digest, scopes in self._tokens.items()}

    def authenticate(self, authorization: str | None, full_method: str) -> Principal | None:
        """Return the caller, or raise Unauthenticated / PermissionDenied.

        Returns None when auth is disabled or the method is public.
        """
        needed = required_scope(full_method)
        if not self.enabled or needed is None:
            return None
        if self._file is not None and time.monotonic() >= self._next_check:
            self.reload_if_changed()
        if not authorization:
            raise Unauthenticated(
                "missing bearer token: send metadata 'authorization: Bearer <token>'",
                reason="MISSING_TOKEN",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "malformed authorization metadata: expected 'Bearer <token>'",
                reason="MALFORMED_TOKEN",
            )
        digest = _digest(token.strip())
        scopes = self._tokens.get(digest)
        if scopes is None:
            raise Unauthenticated("invalid bearer token", reason="INVALID_TOKEN")
        name = digest.hex()[:8]  # == fingerprint(token), without hashing twice per call
        if not scope_allows(scopes, needed):
            raise PermissionDenied(
                f"token {name} lacks scope '{needed}' required by {full_method}",
                reason="MISSING_SCOPE",
                metadata={"required_scope": needed},
            )
        return Principal(name, scopes)


def _file_state(path: Path) -> tuple[int, ...] | None:
    """What changes when the file is rewritten, replaced or chmod-ed; None when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def read_tokens_file(path: Path) -> dict[str, list[str]]:
    """Parse ``<token> <scope>[,<scope>...]`` lines; ``#`` starts a comment.

    Raises:
        ConfigError: unreadable, accessible to other users (``SECRETS_FILE_EXPOSED``), or a
            malformed line (named by number; the line itself is never quoted).
    """
    tokens: dict[str, list[str]] = {}
    raw = read_private(Path(path), "server.auth.tokens_file")
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"server.auth.tokens_file {path} is not UTF-8 text") from None
    for lineno, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        token, _, scopes = line.partition(" ")
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        if not scope_list:
            raise ConfigError(
                f"server.auth.tokens_file {path}:{lineno}: expected '<token> <scope>[,<scope>]'"
            )
        tokens[token] = scope_list
    return tokens

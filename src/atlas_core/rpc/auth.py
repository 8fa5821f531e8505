"""Bearer-token authentication and scope checks, free of grpc so it is unit-testable.

Scopes are ``<service>:read``, ``<service>:write``, ``<service>:*`` or ``*``; ``write``
implies ``read``. A method's required scope is derived from its name: ``Get``/``List``/
``Watch``/``Describe``/``Search``/``Predict``-style read RPCs need ``read``, everything else
``write``. Tokens are compared in constant time and never logged; logs name a token only by
a short fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from atlas_core.config import AuthSettings
from atlas_core.errors import ConfigError, PermissionDenied, Unauthenticated

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
    """Maps bearer tokens to scopes and decides whether a call may proceed."""

    def __init__(self, tokens: Mapping[str, Iterable[str]], *, enabled: bool = True) -> None:
        self.enabled = enabled
        # Keyed by digest: a dict lookup on hashes leaks nothing about the tokens' bytes, so
        # it is as safe as a constant-time compare and O(1) per call.
        self._tokens = {_digest(tok): frozenset(scopes) for tok, scopes in tokens.items()}
        if enabled and not self._tokens:
            raise ConfigError(
                "auth is enabled but no tokens are configured: set server.auth.tokens_file "
                "or server.auth.tokens, or set server.auth.enabled=false for local development"
            )

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenAuthenticator:
        tokens: dict[str, list[str]] = {k: list(v) for k, v in settings.tokens.items()}
        if settings.tokens_file is not None:
            tokens.update(read_tokens_file(settings.tokens_file))
        return cls(tokens, enabled=settings.enabled)

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


def read_tokens_file(path: Path) -> dict[str, list[str]]:
    """Parse ``<token> <scope>[,<scope>...]`` lines; ``#`` starts a comment."""
    tokens: dict[str, list[str]] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read server.auth.tokens_file {path}: {exc.strerror}") from None
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

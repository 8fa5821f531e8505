"""Typed configuration, read once in a service's ``__main__`` and passed down explicitly.

Every setting has a default suitable for the embedded single-machine suite. Values come from,
in increasing precedence: defaults, a YAML/JSON file, then environment variables named
``<PREFIX>_<FIELD>`` with ``__`` between nested fields, e.g. ``ATLAS_DATA_S3__ENDPOINT``.
Unknown keys -- in the file or in prefixed environment variables -- are rejected with a
:class:`~atlas_core.errors.ConfigError` naming the key. Library code never reads os.environ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from atlas_core.errors import ConfigError


class StrictModel(BaseModel):
    """Base for all settings: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(StrictModel):
    """Where artifacts live: SeaweedFS (embedded), MinIO or AWS S3 -- same client."""

    endpoint: str = "127.0.0.1:8333"
    access_key: SecretStr = SecretStr("atlas")
    secret_key: SecretStr = SecretStr("atlas-secret-key")
    bucket: str = "atlas"
    secure: bool = False
    region: str = "us-east-1"
    # Objects above this size are uploaded in parts of this size (streaming, bounded memory).
    part_size: int = 16 * 1024 * 1024
    # Server-side encryption of every object written: "s3" (SSE-S3, keys held by the store)
    # or "kms" (SSE-KMS under kms_key_id; needs secure=true). None: the bucket's default.
    sse: Literal["s3", "kms"] | None = None
    kms_key_id: str | None = None

    @model_validator(mode="after")
    def _kms_needs_a_key(self) -> S3Settings:
        if self.sse == "kms" and not self.kms_key_id:
            raise ValueError("sse 'kms' needs kms_key_id")
        return self


SqliteSynchronous = Literal["NORMAL", "FULL"]


class DatabaseSettings(StrictModel):
    """SQLAlchemy URL of the metadata database (SQLite file by default, PostgreSQL to scale).

    PostgreSQL TLS: ``sslmode`` is libpq's (``require`` encrypts; ``verify-full`` also checks
    the server's certificate against ``sslrootcert`` and its host name); ``sslcert`` /
    ``sslkey`` authenticate the client by certificate. Set here or in the URL's query; either
    way they reach every connection (SQLAlchemy and Optuna's storage alike).
    """

    url: str = "sqlite:///.atlas/atlas.db"
    echo: bool = False
    # SQLite's PRAGMA synchronous (WAL mode): FULL syncs the log on every commit, NORMAL only
    # at checkpoints (commits survive a crash or kill of the process, the last ones may roll
    # back on power loss). Unset: the service's default (FULL, labeling's is NORMAL).
    sqlite_synchronous: SqliteSynchronous | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        None
    )
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    sslkey: Path | None = None


class TlsSettings(StrictModel):
    """Server TLS. With ``client_ca_file`` set, clients must present a certificate (mTLS)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


class AuthSettings(StrictModel):
    """Bearer-token auth. ``tokens_file`` holds lines ``<token> <scope>[,<scope>...]``; it
    must be owner-only, and is re-read when it changes (rotate tokens without a restart).

    ``tokens`` maps token -> scopes (handy from env as JSON). With neither set and
    ``enabled`` false, the server accepts anonymous calls (local development only).
    """

    enabled: bool = True
    tokens_file: Path | None = None
    tokens: dict[str, list[str]] = Field(default_factory=dict)
    # How often, at most, the tokens file is checked for changes (rotation without restart).
    tokens_reload_seconds: float = Field(default=1.0, ge=0)


class ServerSettings(StrictModel):
    """Network and runtime settings every gRPC server shares."""

    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = 0  # 0 = pick a free port; None = no metrics endpoint
    max_receive_message_bytes: int = 64 * 1024 * 1024
    max_send_message_bytes: int = 64 * 1024 * 1024
    shutdown_grace_seconds: float = 5.0
    # Close each client connection (GOAWAY; calls in flight finish) after this long, so
    # clients reconnect and re-resolve DNS: round_robin over a headless Service then sees
    # pods added since (gRPC re-resolves a name only when a connection drops). None = never.
    max_connection_age_seconds: float | None = Field(default=None, gt=0)
    log_level: str = "INFO"
    # auto = uvloop where installed (less CPU per small RPC), else asyncio's own loop.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    tls: TlsSettings = Field(default_factory=TlsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # glibc's allocator (atlas_core.memory): at most this many malloc arenas (None = glibc's
    # 8 per core), and free heap pages returned to the kernel this often (None = never).
    malloc_arenas: int | None = Field(default=2, ge=1)
    malloc_trim_seconds: float | None = Field(default=60.0, gt=0)


class JobSettings(StrictModel):
    """A service's job runner (:mod:`atlas_core.jobs`). ``runner_id`` names it in the
    database: keep it stable across restarts (the jobs it left running are recovered when it
    starts again) and unique per replica. Unset values take the service's defaults (its
    :class:`atlas_core.jobs.JobTable`). Services with settings of their own jobs extend it."""

    max_concurrent: int | None = Field(default=None, ge=1)
    runner_id: str | None = None


class BundleSettings(StrictModel):
    """Model bundle signatures (docs/security.md).

    A service that writes bundles signs each manifest with ``signing_key_file`` (an Ed25519
    private key, PEM, owner-only); a service that loads bundles accepts only those signed by
    a key in ``trusted_keys`` (PEM public keys). Left unset, both use the local keypair
    ``<data_dir>/secrets/bundle-signing.key`` / ``.pub``, generated on first start.
    ``allow_unsigned`` (development only) also loads unsigned or foreign bundles, logging a
    warning at every load.
    """

    signing_key_file: Path | None = None
    trusted_keys: list[Path] = Field(default_factory=list)
    allow_unsigned: bool = False


class ServiceSettings(StrictModel):
    """Base of each service's settings object."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bundles: BundleSettings = Field(default_factory=BundleSettings)
    data_dir: Path = Path(".atlas")


S = TypeVar("S", bound=BaseModel)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


# Processes whose env prefix extends another's: the annotator web app (ATLAS_LABELING_WEB_)
# beside the labeling service (ATLAS_LABELING_). The shorter prefix leaves these alone, so one
# shell may export settings for both.
NESTED_ENV_PREFIXES = ("ATLAS_LABELING_WEB_",)


def _env_overrides(prefix: str, env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    head = prefix.upper().rstrip("_") + "_"
    nested = [p for p in NESTED_ENV_PREFIXES if p.startswith(head) and p != head]
    for name, raw in env.items():
        if not name.startswith(head) or name == head + "CONFIG":
            continue
        if any(name.startswith(p) for p in nested):
            continue
        path = name[len(head) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another one")
        node[path[-1]] = _parse_env_value(raw)
    return out


def _parse_env_value(raw: str) -> Any:
    # JSON lets env carry lists/maps/numbers; anything else stays a plain string.
    stripped = raw.strip()
    if stripped[:1] in "[{" or stripped in ("true", "false", "null"):
        try:
            return json.loads(stripped)
        except ValueError:
            return raw
    return raw


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_var(prefix: str, setting: str) -> str:
    """The environment variable of a dotted setting: ``("ATLAS_DATA", "database.url")`` ->
    ``ATLAS_DATA_DATABASE__URL``."""
    return prefix.upper().rstrip("_") + "_" + "__".join(setting.upper().split("."))


def _describe(exc: ValidationError, prefix: str) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env_name = env_var(prefix, key)
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}' (env {env_name})")
        else:
            problems.append(f"'{key}' (env {env_name}): {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(
    model: type[S],
    *,
    env_prefix: str,
    env: Mapping[str, str] | None = None,
    file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """Build ``model`` from defaults, ``file`` (or ``<PREFIX>_CONFIG``), env and overrides.

    Raises:
        ConfigError: a key is unknown or a value has the wrong type; the message names it.
    """
    env = dict(env or {})
    data: dict[str, Any] = {}
    file = file or env.get(env_prefix.upper().rstrip("_") + "_CONFIG")
    if file:
        data = _read_file(Path(file))
    data = _merge(data, _env_overrides(env_prefix, env))
    data = _merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, env_prefix)) from None

"""Secrets on disk: written owner-only, refused when other users may read them.

Token files, signing keys and TLS keys are checked every time a process reads them (so on
every start and every reload): a file that other users can read has already leaked, and
starting anyway would hide that.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from atlas_core.errors import SETTING, ConfigError

_DOTTED = re.compile(r"[a-z_]+(\.[a-z_]+)+")


def write_private(path: Path, data: str | bytes) -> None:
    """Create or replace ``path`` readable by its owner only (its directory too)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def read_private(path: Path, what: str) -> bytes:
    """The bytes of the secrets file ``path``, refusing one that other users can access.

    ``what`` names the setting in messages (e.g. ``server.auth.tokens_file``).

    Raises:
        ConfigError: unreadable, or reason ``SECRETS_FILE_EXPOSED`` when its mode grants
            anything to other users.
    """
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read()
    except OSError as exc:
        # a setting's dotted name (not a prose description) lets the process name its env var
        setting = {SETTING: what} if _DOTTED.fullmatch(what) else None
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", metadata=setting) from None
    if mode & (stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} is accessible to other users (mode {stat.filemode(mode)}); "
            f"restrict it with `chmod 600 {path}` (and treat its secrets as leaked)",
            reason="SECRETS_FILE_EXPOSED",
        )
    return data

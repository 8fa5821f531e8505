"""What to show users for optuna-dashboard: the study storage URL without credentials."""

from __future__ import annotations

import shlex
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from atlas_core.errors import InvalidArgument

_SECRET_QUERY_KEYS = {"password", "sslpassword", "passfile", "sslkey", "token"}


def dashboard_storage_url(storage_url: str, *, base_dir: Path | None = None) -> str:
    """The Optuna RDB storage URL with the password and secret query parameters removed.

    SQLite paths are made absolute (against ``base_dir``, default the current directory) so the
    URL works from wherever ``optuna-dashboard`` is started.

    Raises:
        InvalidArgument: the URL is not an SQLAlchemy URL.
    """
    try:
        url = make_url(storage_url)
    except ArgumentError as err:
        raise InvalidArgument(f"not a storage URL: {err}", reason="INVALID_STORAGE_URL") from None
    url = url._replace(password=None)  # URL.set() treats None as "unchanged"
    query = {k: v for k, v in url.query.items() if k.lower() not in _SECRET_QUERY_KEYS}
    url = url.set(query=query)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        if not database.is_absolute():
            database = (base_dir or Path.cwd()) / database
        url = url.set(database=str(database.resolve()))
    return url.render_as_string(hide_password=False)


def dashboard_command(storage_url: str, *, base_dir: Path | None = None) -> str:
    """A shell command that opens the dashboard on the storage (add the password yourself
    for password-protected databases, e.g. through ``PGPASSWORD``)."""
    return "optuna-dashboard " + shlex.quote(dashboard_storage_url(storage_url, base_dir=base_dir))

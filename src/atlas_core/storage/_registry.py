"""Which store a settings object opens: a type registry, not an if/elif chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from atlas_core.errors import InvalidArgument
from atlas_core.storage._base import ArtifactStore

SettingsT = TypeVar("SettingsT")
_FACTORIES: dict[type[Any], Callable[[Any], ArtifactStore]] = {}


def register_artifact_store(
    settings_type: type[SettingsT], factory: Callable[[SettingsT], ArtifactStore]
) -> None:
    """Make :func:`open_artifact_store` build ``factory(settings)`` for ``settings_type``."""
    _FACTORIES[settings_type] = factory


def open_artifact_store(settings: object) -> ArtifactStore:
    """The artifact store configured by ``settings`` (e.g. ``S3Settings``).

    Raises:
        InvalidArgument: no store is registered for the settings' type.
    """
    for settings_type in type(settings).__mro__:
        factory = _FACTORIES.get(settings_type)
        if factory is not None:
            return factory(settings)
    known = ", ".join(sorted(t.__name__ for t in _FACTORIES)) or "none"
    raise InvalidArgument(
        f"no artifact store is registered for settings of type {type(settings).__name__} "
        f"(known: {known})",
        reason="UNKNOWN_STORE",
    )

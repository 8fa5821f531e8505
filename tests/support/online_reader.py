"""Which atlas-online-reader binary the tests start: ``$ATLAS_DATA_NATIVE_READER__BINARY``
(the data service's own setting, e.g. a branch's ``build/native/atlas-online-reader``) when
set, else the installed one (beside the interpreter, then on PATH)."""

from __future__ import annotations

import os
from pathlib import Path

BINARY_ENV = "ATLAS_DATA_NATIVE_READER__BINARY"


def configured_binary() -> Path | None:
    """The binary named by the environment, None to use the data service's default lookup."""
    value = os.environ.get(BINARY_ENV)
    return Path(value) if value else None


def reader_binary() -> Path | None:
    """The binary the tests' data services start, None when there is none."""
    from atlas_data.native_reader import find_binary

    return find_binary(configured_binary())

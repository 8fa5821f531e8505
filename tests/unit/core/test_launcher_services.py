"""Which services `atlas up` starts."""

from __future__ import annotations

import importlib.util

from atlas_core.launcher import KNOWN_SERVICES, implemented_services


def test_a_service_that_is_not_launchable_is_never_started() -> None:
    labeling = next(s for s in KNOWN_SERVICES if s.name == "labeling")
    assert importlib.util.find_spec("atlas_labeling.__main__") is not None
    assert not labeling.launchable
    assert "labeling" not in [s.name for s in implemented_services()]
    assert {"data", "serving"} <= {s.name for s in implemented_services()}

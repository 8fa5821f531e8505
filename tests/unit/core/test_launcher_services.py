"""Which services `atlas up` starts, and in which order."""

from __future__ import annotations

from atlas_core.launcher import implemented_services


def test_labeling_starts_after_the_services_it_calls() -> None:
    names = [s.name for s in implemented_services()]
    labeling = next(s for s in implemented_services() if s.name == "labeling")
    assert labeling.port_offset == 4 and set(labeling.needs) == {"data", "serving"}
    assert names.index("labeling") > max(names.index("data"), names.index("serving"))

"""Which services `atlas up` starts, and in which order."""

from __future__ import annotations

import importlib.util

from atlas_core.launcher import implemented_services


def test_labeling_starts_after_the_services_it_calls() -> None:
    names = [s.name for s in implemented_services()]
    labeling = next(s for s in implemented_services() if s.name == "labeling")
    assert labeling.port_offset == 4 and set(labeling.needs) == {"data", "serving"}
    assert names.index("labeling") > max(names.index("data"), names.index("serving"))


def test_the_trainer_starts_after_the_serving_registry_it_registers_bundles_in() -> None:
    names = [s.name for s in implemented_services()]
    trainer = next(s for s in implemented_services() if s.name == "trainer")
    assert trainer.port_offset == 2 and set(trainer.needs) == {"data", "serving"}
    assert names.index("trainer") > max(names.index("data"), names.index("serving"))


def test_the_annotator_web_app_runs_exactly_when_the_labeling_service_does() -> None:
    from atlas_core.launcher import KNOWN_WEB_APPS, implemented_web_apps

    web = next(a for a in KNOWN_WEB_APPS if a.name == "labeling-web")
    assert web.serves == "labeling" and web.env_prefix == "ATLAS_LABELING_WEB_"
    assert importlib.util.find_spec("atlas_labeling.web.__main__") is not None
    services = implemented_services()
    assert web in implemented_web_apps()
    assert implemented_web_apps([s for s in services if s.name != "labeling"]) == []


def test_serving_learns_where_labeling_will_be_before_it_starts(tmp_path) -> None:
    from atlas_core.launcher import Launcher
    from atlas_core.launcher._launcher import ProcessInfo

    services = implemented_services()
    serving = next(s for s in services if s.name == "serving")
    assert "labeling" in serving.needs  # bad cases go to labeling, which starts later
    free = Launcher(tmp_path, base_port=0).service_ports(services)
    assert len(set(free.values())) == len(services) and 0 not in free.values()
    started = [ProcessInfo("data", 1, "127.0.0.1:7001", "log")]
    peers = Launcher.peer_addresses(free, started)
    assert peers["labeling"] == f"127.0.0.1:{free['labeling']}"
    assert peers["data"] == "127.0.0.1:7001"  # where it actually runs

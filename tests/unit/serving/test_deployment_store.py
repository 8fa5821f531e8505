"""DeploymentStore: a cancel request is never lost to the rollout driver's own writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_core.config import DatabaseSettings
from atlas_core.db import apply_migrations, create_engine_from_settings
from atlas_core.errors import NotFound
from atlas_serving.control.rollout import DeploymentStore, new_deployment
from atlas_serving.convert import CODECS
from atlas_serving.domain import Alarms, DeploymentState, Endpoint, EndpointSpec, TrafficPolicy
from atlas_serving.tables import MIGRATIONS

S = DeploymentState


@pytest.fixture()
def store(tmp_path: Path) -> DeploymentStore:
    engine = create_engine_from_settings(DatabaseSettings(url=f"sqlite:///{tmp_path}/s.db"))
    apply_migrations(engine, MIGRATIONS)
    return DeploymentStore(engine, CODECS.deployment)


def _deployment(store: DeploymentStore) -> str:
    endpoint = Endpoint(spec=EndpointSpec(name="bc"))
    dep, driver = new_deployment(endpoint, [], TrafficPolicy(), Alarms(), "r1")
    store.insert(dep, driver, owner="replica-0")
    return dep.deployment_id


def test_cancel_survives_a_driver_save_of_older_state(store: DeploymentStore) -> None:
    dep_id = _deployment(store)
    dep, driver = store.get(dep_id)  # the driver reads its state ...
    assert store.request_cancel(dep_id).state == S.SHIFTING
    driver["step"] = 1  # ... and saves its progress after the cancel landed
    store.save(dep, driver, "replica-0")
    _, stored = store.get(dep_id)
    assert stored["cancel"] is True and stored["step"] == 1


def test_cancel_leaves_finished_deployments_alone(store: DeploymentStore) -> None:
    dep_id = _deployment(store)
    dep, driver = store.get(dep_id)
    dep.state = S.SUCCEEDED
    store.save(dep, driver)
    assert store.request_cancel(dep_id).state == S.SUCCEEDED
    assert store.get(dep_id)[1]["cancel"] is False
    with pytest.raises(NotFound, match="does not exist"):
        store.request_cancel("nope")

"""Chaos under load, the short version of ``bench/chaos.py --chaos`` (issue #33, capability 4):
the whole suite (metadata in a private PostgreSQL when its binaries are installed) under small
mixed traffic while every service, the object store and PostgreSQL are killed with SIGKILL
and restarted once each. Nothing acknowledged is lost, the training job finishes, every
published bundle and offline partition reads back, and every client lane recovers."""

from __future__ import annotations

import pytest

from atlas_core.errors import FailedPrecondition
from atlas_core.launcher._objectstore import find_weed_binary
from bench._chaos_suite import ChaosPlan, run_chaos

pytestmark = pytest.mark.slow

PLAN = ChaosPlan(
    warmup_s=2,
    between_s=2,
    down_s=0.5,
    after_s=2,
    items=20,
    ingest_batch=20,
    ingest_pause_s=0.1,
    predict_pause_s=0.1,
    label_pause_s=0.2,
    register_pause_s=1.0,
    train_jobs=1,
    train_wall_s=30,
    job_wait_s=300,
)


@pytest.mark.timeout(1500)
def test_kill_9_of_every_process_under_load_loses_nothing(tmp_path):
    try:
        find_weed_binary()
    except FailedPrecondition as exc:
        pytest.skip(str(exc))
    out = run_chaos(tmp_path, PLAN, echo=lambda _line: None)

    killed = set(out["chaos_restart_s"])
    assert {"data", "serving", "trainer", "labeling", "objectstore"} <= killed
    acked = out["chaos_acked"]
    assert min(acked.values()) > 0, acked  # every kind of write was acknowledged
    assert out["acked_lost"] == 0, out["acked_lost_by_kind"]
    assert out["jobs_lost"] == 0, out["jobs_lost_detail"]
    assert out["half_published"] == 0, out["half_published_detail"]
    assert out["offline_rows_missing"] == 0
    # clients recovered: no write gave up, and every lane succeeded after its last error
    assert out["chaos_gave_up"] == {}
    assert out["chaos_lanes_still_failing"] == []
    assert all(n > 0 for n in out["chaos_calls_ok"].values()), out["chaos_calls_ok"]

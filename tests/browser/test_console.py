"""The web console in a real browser, against a real suite started the way `atlas up` starts
it (object store, every service, the console on its own port): sign-in is required, and the
pages show a real dataset, a short training job with its leaderboard and plots, the model it
registered, and an endpoint with its variants, figures and drift, without ever putting the
token or the object store's keys in a page."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as trainer_pb
from atlas_core.clients import DataClient, TrainerClient, automl_spec
from atlas_core.clients.serving import ServingClient, variant
from atlas_core.config import S3Settings
from atlas_core.launcher import Launcher, ensure_credentials
from atlas_core.rpc import ClientSettings
from atlas_core.storage import open_artifact_store

from ._helpers import assert_no_script_errors, shot, watch_errors

pytestmark = pytest.mark.slow
MODEL, ENDPOINT, ROWS = "console-model", "console-endpoint", 240


@dataclass
class Suite:
    base_url: str
    token: str
    secrets: list[str]  # must appear in no page
    dataset_id: str
    job_id: str
    trainer: TrainerClient


def _dataset(store: Any, data: DataClient) -> str:
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    colour = rng.choice(["red", "green", "blue"], size=ROWS)
    count = rng.integers(0, 10, size=ROWS)
    y = np.where(x1 + 0.5 * x2 + (colour == "red") > 0.3, "yes", "no")
    table = pa.table({"x1": x1, "x2": x2, "colour": colour, "count": count, "y": y})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = store.put_bytes(f"console-tests/{uuid.uuid4().hex}.parquet", buf.getvalue())
    artifact = common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)
    return data.register_dataset("console-demo", [artifact], label_column="y").ref.dataset_id


def short_job(dataset_id: str, trials: int) -> trainer_pb.TrainingJobSpec:
    spec = automl_spec(
        target="y", dataset=(dataset_id, 0), wall_seconds=60, max_trials=trials, seed=0
    )
    spec.automl.search_space.model_families[:] = [
        trainer_pb.MODEL_FAMILY_LINEAR,
        trainer_pb.MODEL_FAMILY_LIGHTGBM,
    ]
    return spec


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    data_dir = tmp_path_factory.mktemp("console-suite")
    launcher = Launcher(data_dir, s3_port=0, base_port=0)
    try:
        state = launcher.up(echo=lambda *_: None)
        address = {p.name: p.address for p in state.processes}
        creds = ensure_credentials(data_dir)
        settings = lambda name: ClientSettings(target=address[name], token=creds.admin_token)  # noqa: E731
        store = open_artifact_store(
            S3Settings(
                endpoint=state.s3_endpoint,
                access_key=creds.s3_access_key,
                secret_key=creds.s3_secret_key,
            )
        )
        data = DataClient(settings("data"))
        trainer = TrainerClient(settings("trainer"))
        serving = ServingClient(settings("serving"))
        dataset_id = _dataset(store, data)
        spec = short_job(dataset_id, trials=4)
        spec.register.CopyFrom(trainer_pb.RegisterModelOptions(model_name=MODEL))
        job = trainer.wait(trainer.submit(spec).status.job_id)
        assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
        version = job.result.registration.model_version.version
        endpoint = serving_pb.EndpointSpec(
            name=ENDPOINT, variants=[variant("blue", MODEL, version=version)]
        )
        endpoint.capture.enabled, endpoint.capture.sample_fraction = True, 1.0
        endpoint.capture.flush_rows = 10
        serving.create_endpoint(endpoint)
        # A rollout onto the same version, with alarms, for the deployments table.
        alarms = serving_pb.AlarmConfig(max_error_rate=0.05, min_requests=5)
        rollout = serving.deploy(ENDPOINT, [variant("blue", MODEL, version=version)], alarms=alarms)
        serving.wait_deployment(rollout.deployment_id, timeout=60)
        rng = np.random.default_rng(1)
        for k in range(40):
            # Shifted inputs, so the drift report has something to show.
            serving.predict(
                ENDPOINT,
                {
                    "x1": float(rng.normal() + 2),
                    "x2": float(rng.normal()),
                    "colour": "red",
                    "count": int(k % 10),
                },
            )
        drift = serving.monitor(ENDPOINT)
        serving.wait_monitoring_job(drift.status.job_id, timeout=120)
        yield Suite(
            base_url="http://" + address["console"],
            token=creds.admin_token,
            secrets=[creds.admin_token, creds.s3_access_key, creds.s3_secret_key],
            dataset_id=dataset_id,
            job_id=job.status.job_id,
            trainer=trainer,
        )
        for client in (data, trainer, serving):
            client.close()
    finally:
        launcher.down(echo=lambda *_: None)


def sign_in(browser: Any, suite: Suite) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch_errors(page)
    page.goto(suite.base_url + "/jobs")
    assert "/signin" in page.url
    page.fill("#token", suite.token)
    page.click("#signin-button")
    page.wait_for_url(suite.base_url + "/jobs")
    return page


def visit(page: Any, suite: Suite, path: str, shots: Path, name: str) -> str:
    response = page.goto(suite.base_url + path)
    assert response is not None and response.status == 200, path
    page.wait_for_load_state("load")
    shot(page, shots, name)
    html = page.content()
    for secret in suite.secrets:
        assert secret not in html, f"{path} shows a secret"
    assert_no_script_errors(page)
    return html


def test_nothing_is_served_without_a_valid_token(browser: Any, suite: Suite) -> None:
    context = browser.new_context()
    page = context.new_page()
    for path in ("/jobs", f"/jobs/{suite.job_id}", "/endpoints", f"/datasets/{suite.dataset_id}"):
        page.goto(suite.base_url + path)
        assert "/signin" in page.url
        assert page.locator("#token").count() == 1
        assert page.locator("#leaderboard, #datasets, #endpoints, #schema").count() == 0
    plot = context.request.get(f"{suite.base_url}/jobs/{suite.job_id}/plots/leaderboard")
    assert "/signin" in plot.url and b"<svg" not in plot.body()
    page.fill("#token", "not-a-token-of-this-suite")
    page.click("#signin-button")
    assert page.locator("#signin-problem").inner_text().startswith("This token is not valid")
    assert "/signin" in page.url
    context.close()


def test_job_pages_show_the_leaderboard_and_the_report(
    browser: Any, suite: Suite, shots: Path
) -> None:
    page = sign_in(browser, suite)
    html = visit(page, suite, "/jobs", shots, "jobs")
    assert suite.job_id in html
    row = page.locator(f"tr[data-job-id='{suite.job_id}']")
    assert "succeeded" in row.inner_text()

    visit(page, suite, f"/jobs/{suite.job_id}", shots, "job")
    board = suite.trainer.leaderboard(suite.job_id)
    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == len(board.entries) > 0
    assert f"{board.entries[0].score:.4g}" in rows.first.inner_text()
    assert page.locator("#job-live").get_attribute("hx-get") is None  # finished: no polling
    # Importance as bars, and every plot of the report framed from the console itself.
    report = suite.trainer.report(suite.job_id)
    assert page.locator("#importance rect").count() == min(20, len(report.feature_importance))
    frames = page.locator("#plots iframe")
    assert frames.count() == len(report.plots) > 0
    for plot in report.plots:
        got = page.request.get(f"{suite.base_url}/jobs/{suite.job_id}/plots/{plot.name}")
        assert got.status == 200 and got.headers["content-type"].startswith("text/html")
        assert "sandbox" in got.headers["content-security-policy"]
        body = got.text()
        assert "<svg" in body and all(s not in body for s in suite.secrets)
    for i, plot in enumerate(report.plots):  # every framed plot draws its chart
        chart = page.frame_locator("#plots iframe").nth(i).locator("svg").first
        chart.wait_for()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50
        frames.nth(i).screenshot(path=str(shots / f"plot-{plot.name}.png"))
    # Only what the report names is read from the store.
    for name in ("not-a-plot", "..%2Fcreds"):
        missing = page.request.get(f"{suite.base_url}/jobs/{suite.job_id}/plots/{name}")
        assert missing.status == 404
    page.context.close()


def test_a_running_job_updates_in_place(browser: Any, suite: Suite, shots: Path) -> None:
    job = suite.trainer.submit(short_job(suite.dataset_id, trials=2))
    page = sign_in(browser, suite)
    page.goto(f"{suite.base_url}/jobs/{job.status.job_id}")
    live = page.locator("#job-live")
    assert live.get_attribute("hx-get") == f"/jobs/{job.status.job_id}/progress"
    shot(page, shots, "job-running")
    # htmx polls the progress; when the job ends the page reloads once with the report.
    page.wait_for_selector("#job-live[data-state='succeeded']", timeout=120_000)
    page.wait_for_selector("#plots iframe", timeout=30_000)
    assert page.locator("#leaderboard tbody tr").count() >= 1
    shot(page, shots, "job-finished")
    assert_no_script_errors(page)
    page.context.close()


def test_dataset_pages_show_schema_meta_features_and_lineage(
    browser: Any, suite: Suite, shots: Path
) -> None:
    page = sign_in(browser, suite)
    html = visit(page, suite, "/datasets", shots, "datasets")
    assert "console-demo" in html and suite.dataset_id in html
    page.click(f"tr[data-dataset-id='{suite.dataset_id}'] a")
    page.wait_for_selector("#schema")
    html = visit(page, suite, page.url.removeprefix(suite.base_url), shots, "dataset")
    schema = page.locator("#schema").inner_text()
    for column in ("x1", "x2", "colour", "count", "y"):
        assert column in schema
    assert "240 × 4" in page.locator("#meta-features").inner_text()
    assert page.locator("#labels").inner_text().split() == ["no", "136", "yes", "104"]
    # Registered from a file: the file is its one parent.
    lineage = page.locator("#lineage").inner_text()
    assert "source" in lineage and ".parquet" in lineage
    page.context.close()


def test_model_and_endpoint_pages(browser: Any, suite: Suite, shots: Path) -> None:
    page = sign_in(browser, suite)
    html = visit(page, suite, "/models", shots, "models")
    assert MODEL in html
    visit(page, suite, f"/models/{MODEL}", shots, "model")
    version = page.locator("section.version").first
    # The registered version names the job and the dataset it came from.
    assert page.locator(f"section.version a[href='/jobs/{suite.job_id}']").count() >= 1
    assert "candidate" in version.inner_text()

    html = visit(page, suite, "/endpoints", shots, "endpoints")
    assert ENDPOINT in html
    visit(page, suite, f"/endpoints/{ENDPOINT}", shots, "endpoint")
    blue = page.locator("#variants tr[data-variant='blue']")
    assert MODEL in blue.inner_text() and "100" in blue.inner_text()
    assert " ms" in blue.inner_text()
    assert page.locator("#latency-chart rect").count() >= 1
    assert page.locator("#error-chart rect").count() >= 1
    drift = page.locator("#drift")
    assert "x1" in drift.inner_text()
    rollout = page.locator("#deployments tbody tr")
    assert rollout.count() == 1 and "succeeded" in rollout.inner_text()
    assert "errors > 5.0%" in rollout.inner_text() and "min 5 requests" in rollout.inner_text()
    page.context.close()


def test_lineage_graph_from_a_dataset_and_from_any_id(
    browser: Any, suite: Suite, shots: Path
) -> None:
    page = sign_in(browser, suite)
    page.goto(f"{suite.base_url}/datasets/{suite.dataset_id}?version=1")
    page.click("#lineage-graph-link")
    page.wait_for_selector("#lineage-graph")
    root = f"dataset:{suite.dataset_id}@1"
    visit(page, suite, page.url.removeprefix(suite.base_url), shots, "lineage")
    nodes = {
        n.get_attribute("data-node") for n in page.locator("#lineage-nodes tr[data-node]").all()
    }
    # The file it was registered from, the job that trained on it and the model version the
    # job registered, across the data, trainer and serving services.
    assert root in nodes and f"training_job:{suite.job_id}" in nodes
    assert f"model_version:{MODEL}@1" in nodes
    assert any(n.startswith("artifact:") for n in nodes)
    assert page.locator("#lineage-graph path.edge").count() >= 3
    # Any node re-roots the graph on itself; its page is one click away.
    page.click(f"#lineage-graph a[data-node='training_job:{suite.job_id}']")
    page.wait_for_url(f"**/lineage?id=training_job%3A{suite.job_id}")
    row = page.locator(f"#lineage-nodes tr[data-node='training_job:{suite.job_id}']")
    assert row.get_attribute("class") == "best"
    row.locator("a", has_text="open").click()
    page.wait_for_url(f"{suite.base_url}/jobs/{suite.job_id}")
    # An id that names nothing says what to fix instead of failing.
    page.goto(f"{suite.base_url}/lineage?id=nonsense")
    assert "kind" in page.locator("#lineage-problem").inner_text()
    page.goto(f"{suite.base_url}/lineage?id=dataset:no-such-dataset@1")
    assert page.locator("#lineage-problem").count() == 1
    assert_no_script_errors(page)
    page.context.close()

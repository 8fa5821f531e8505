"""LabelingClient (domain errors, pagination) and `atlas label ...` against a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.cli import main
from atlas_core.clients import LabelingClient
from atlas_core.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas_core.rpc import ClientSettings

from .conftest import TOKEN, LabelingHarness


def _client_flow(address: str) -> None:
    with LabelingClient(ClientSettings(target=address, token=TOKEN)) as client:
        spec = pb.ProjectSpec(
            name="sdk",
            task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
            labels=[pb.LabelDefinition(name="a"), pb.LabelDefinition(name="b")],
        )
        project = client.create_project(spec, request_id="c1")
        assert client.create_project(spec, request_id="c1").project_id == project.project_id
        ids = client.add_texts(project.project_id, [f"text {i}" for i in range(1200)][:1000])
        ids += client.add_texts(project.project_id, [f"more {i}" for i in range(200)])
        items = list(client.iter_items(project.project_id, omit_annotations=True))
        assert [i.item_id for i in items] == ids  # 1,200 items over three pages
        (a,) = client.request_assignments(project.project_id, 1, annotator="ann")
        assert client.renew_lease(a.assignment_id, annotator="ann").assignment_id == a.assignment_id
        with pytest.raises(InvalidArgument) as info:
            client.submit_annotation(
                a.assignment_id,
                pb.AnnotationValue(classes=pb.ClassLabels(labels=["zz"])),
                annotator="ann",
            )
        assert info.value.reason == "UNKNOWN_LABEL"
        done = client.submit_annotation(
            a.assignment_id,
            pb.AnnotationValue(classes=pb.ClassLabels(labels=["a"])),
            annotator="ann",
        )
        assert done.item_status == pb.ITEM_STATUS_DONE
        with pytest.raises(FailedPrecondition):
            client.skip(a.assignment_id, annotator="ann")
        with pytest.raises(NotFound):
            client.get_project("prj-none")
        assert client.annotator_stats(project.project_id)[0].annotations == 1
        assert len(client.list_projects()) == 1


async def test_client(labeling: LabelingHarness) -> None:
    await asyncio.to_thread(_client_flow, labeling.server.address)


async def test_cli(labeling: LabelingHarness, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    conn = ["--address", labeling.server.address, "--token", TOKEN]

    async def atlas(*args: str) -> str:
        code = await asyncio.to_thread(main, ["label", *args, *conn])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    out = await atlas("create", "--name", "cli", "--labels", "spam,ham", "--lease-minutes", "5")
    pid = out.split()[2]
    lines = tmp_path / "items.jsonl"
    lines.write_text(
        "\n".join(json.dumps({"text": f"mail {i}", "external_id": str(i)}) for i in range(3))
    )
    assert "added 3 / 3 items" in await atlas("add", pid, str(lines))
    assert "added 0 / 3 items (3 duplicates skipped)" in await atlas("add", pid, str(lines))
    out = await atlas("next", pid, "--annotator", "ann", "--count", "2")
    first, second = (line.split()[0] for line in out.splitlines())
    assert "until" in await atlas("renew", first, "--annotator", "ann")
    out = await atlas("submit", first, "--label", "spam", "--annotator", "ann")
    assert "item is now done" in out
    annotation_id = out.split()[1].rstrip(";")
    assert "skipped" in await atlas("submit", second, "--skip", "--annotator", "ann")
    assert "rejected" in await atlas("review", annotation_id, "reject", "--reviewer", "rev")
    assert "ann" in await atlas("stats", pid)
    assert "cli" in await atlas("projects")
    assert pid in await atlas("describe", pid)
    assert "mail 0" in await atlas("items", pid)
    code = await asyncio.to_thread(
        main, ["label", "submit", first, "--label", "spam", "--annotator", "ann", *conn]
    )
    assert code == 2 and "already" in capsys.readouterr().err
    # Jobs with progress: import a manifest, label, export, agreement and queue.
    store = labeling.service.rt.artifacts
    manifest = store.put_bytes(
        "manifests/cli.jsonl",
        "\n".join(json.dumps({"body": f"note {i}", "user": f"u{i}"}) for i in range(30)).encode(),
    )
    out = await atlas(
        "import",
        pid,
        manifest.uri,
        "--content-column",
        "body",
        "--entity-column",
        "user",
        "--wait",
    )
    assert "SUCCEEDED" in out and "added 30" in out
    out = await atlas("next", pid, "--annotator", "bob", "--count", "40")
    for line in out.splitlines():
        await atlas("submit", line.split()[0], "--label", "ham", "--annotator", "bob")
    out = await atlas("export", pid, "--format", "jsonl", "--wait")
    assert "SUCCEEDED" in out and "rows in 1 part(s)" in out
    job_id = out.split()[2]
    assert f"{job_id} export" in await atlas("jobs", "--project", pid)
    assert "SUCCEEDED" in await atlas("job", job_id, "--watch")
    assert "cursor" in await atlas("exports", pid)
    code = await asyncio.to_thread(main, ["label", "agreement", pid, *conn])
    assert code == 2 and "two or more" in capsys.readouterr().err
    await atlas("queue", pid, "--all")

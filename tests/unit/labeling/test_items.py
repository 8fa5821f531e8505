"""Projects and items on a real metadata database (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from atlas_core.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from atlas_labeling.items import NewItem
from atlas_labeling.schema import (
    FACE_PAIR,
    IMAGE_CLASSIFICATION,
    OBJECT_BOXES,
    TEXT_CLASSIFICATION,
    LabelDef,
    ProjectSpec,
)
from atlas_labeling.values import Box, Boxes, Classes, ItemContent
from tests.support.images import jpeg_header, png_bytes

from .conftest import Harness

LABELS = (LabelDef("pos"), LabelDef("neg"))


def text_items(n: int, prefix: str = "t") -> list[NewItem]:
    return [
        NewItem(ItemContent(text=f"text {i}"), entity_id=f"e{i}", external_id=f"{prefix}{i}")
        for i in range(n)
    ]


def test_projects_create_list_update_archive(harness: Harness) -> None:
    svc = harness.service
    project = svc.create_project(ProjectSpec("reviews", TEXT_CLASSIFICATION, LABELS), "r1")
    assert project.spec.assignment_ttl_s == 3600 and project.spec.overlap == 1
    assert svc.create_project(ProjectSpec("x", TEXT_CLASSIFICATION, LABELS), "r1") == project
    with pytest.raises(AlreadyExists):
        svc.create_project(ProjectSpec("reviews", TEXT_CLASSIFICATION, LABELS))
    with pytest.raises(NotFound):
        svc.get_project("prj-missing")
    with pytest.raises(InvalidArgument):
        svc.get_project("")
    wider = ProjectSpec("reviews", TEXT_CLASSIFICATION, (*LABELS, LabelDef("mixed")), overlap=3)
    updated = svc.update_project(project.project_id, wider, etag=project.etag)
    assert updated.spec.overlap == 3 and updated.etag != project.etag
    with pytest.raises(Aborted):
        svc.update_project(project.project_id, wider, etag=project.etag)
    svc.create_project(ProjectSpec("images", IMAGE_CLASSIFICATION, LABELS))
    found, more = svc.list_projects(0, 10)
    assert [p.spec.name for p in found] == ["images", "reviews"] and not more
    assert [p.spec.name for p in svc.list_projects(0, 1)[0]] == ["images"]
    assert svc.list_projects(0, 1)[1]
    only = svc.list_projects(0, 10, task_type=TEXT_CLASSIFICATION)[0]
    assert [p.spec.name for p in only] == ["reviews"]
    archived = svc.archive_project(project.project_id)
    assert archived.archived
    assert [p.spec.name for p in svc.list_projects(0, 10)[0]] == ["images"]
    assert len(svc.list_projects(0, 10, include_archived=True)[0]) == 2
    with pytest.raises(FailedPrecondition):
        svc.add_items(project.project_id, text_items(1))


def test_add_items_text_dedup_and_limits(harness: Harness) -> None:
    svc = harness.service
    pid = svc.create_project(ProjectSpec("t", TEXT_CLASSIFICATION, LABELS)).project_id
    ids, skipped = svc.add_items(pid, text_items(3))
    assert skipped == 0 and all(ids)
    # Re-adding the same external ids adds nothing twice; duplicates inside a request too.
    again, skipped = svc.add_items(pid, [*text_items(4), *text_items(1)])
    assert again[:3] == ["", "", ""] and again[3] and again[4] == "" and skipped == 4
    # The same request_id returns the first answer.
    first = svc.add_items(pid, text_items(2, "r"), "req-1")
    assert svc.add_items(pid, text_items(2, "r"), "req-1") == first
    assert svc.get_project(pid).stats.items == 6
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pid, [NewItem(ItemContent(text="ok")), NewItem(ItemContent(text=" "))])
    assert "items[1].content.text" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pid, [NewItem(ItemContent(image_uri="images/x.png"))])
    assert "items[0].content" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pid, text_items(1001, "big"))
    assert info.value.reason == "TOO_MANY_ITEMS"
    with pytest.raises(InvalidArgument):
        svc.add_items(pid, [])
    assert svc.get_project(pid).stats.items == 6  # nothing stored by the failures
    with pytest.raises(NotFound):
        svc.add_items("prj-missing", text_items(1))


def test_items_pages_and_status_filter(harness: Harness) -> None:
    svc = harness.service
    pid = svc.create_project(ProjectSpec("t", TEXT_CLASSIFICATION, LABELS)).project_id
    ids, _ = svc.add_items(pid, text_items(5))
    page, more = svc.list_items(pid, [], 0, 2)
    assert [i.item_id for i in page] == ids[:2] and more
    page, more = svc.list_items(pid, [], 4, 2)
    assert [i.item_id for i in page] == ids[4:] and not more
    assert len(svc.list_items(pid, ["unlabeled"], 0, 10)[0]) == 5
    assert svc.list_items(pid, ["done"], 0, 10)[0] == []
    item = svc.get_item(pid, ids[2])
    assert item.content.text == "text 2" and item.entity_id == "e2" and item.status == "unlabeled"
    with pytest.raises(NotFound):
        svc.get_item(pid, "itm-missing")
    with pytest.raises(InvalidArgument):
        svc.get_item(pid, "")


def test_image_items_record_pixel_size_and_gold_is_validated(harness: Harness) -> None:
    svc, store = harness.service, harness.artifacts
    png = store.put_bytes("images/a.png", png_bytes(64, 48))
    store.put_bytes("images/b.jpg", jpeg_header(1920, 1080))
    store.put_bytes("images/c.txt", b"not an image at all")
    pid = svc.create_project(ProjectSpec("boxes", OBJECT_BOXES, LABELS)).project_id
    gold = Boxes((Box(1, 1, 10, 10, label="pos"),))
    ids, _ = svc.add_items(
        pid,
        [
            NewItem(ItemContent(image_uri=png.uri), gold_value=gold),
            NewItem(ItemContent(image_uri="images/b.jpg")),
        ],
    )
    first, second = (svc.get_item(pid, i) for i in ids)
    assert (first.content.image_width, first.content.image_height) == (64, 48)
    assert (second.content.image_width, second.content.image_height) == (1920, 1080)
    assert first.gold and first.gold_value == Boxes(gold.boxes, 64, 48) and not second.gold
    with pytest.raises(NotFound) as nf:
        svc.add_items(pid, [NewItem(ItemContent(image_uri="images/missing.png"))])
    assert "items[0].content.image" in nf.value.message
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pid, [NewItem(ItemContent(image_uri="images/c.txt"))])
    assert info.value.reason == "BAD_IMAGE"
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(
            pid,
            [
                NewItem(
                    ItemContent(image_uri=png.uri),
                    gold_value=Boxes((Box(60, 1, 10, 10, label="pos"),)),
                )
            ],
        )
    assert "items[0].gold_value.boxes.boxes[0]" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pid, [NewItem(ItemContent(image_uri=png.uri), gold_value=Classes(("pos",)))])
    assert "items[0].gold_value" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pid, [NewItem(ItemContent(image_uri=png.uri), prediction_score=1.2)])
    assert "items[0].prediction_score" in info.value.message
    assert svc.get_project(pid).stats.items == 2
    pair = svc.create_project(ProjectSpec("pairs", FACE_PAIR)).project_id
    with pytest.raises(InvalidArgument) as info:
        svc.add_items(pair, [NewItem(ItemContent(image_uri=png.uri))])
    assert "image_pair" in info.value.message
    (pair_id,), _ = svc.add_items(
        pair, [NewItem(ItemContent(image_uri=png.uri, second_image_uri="images/b.jpg"))]
    )
    assert svc.get_item(pair, pair_id).content.second_image_uri == "images/b.jpg"

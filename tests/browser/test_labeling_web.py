"""The annotator web app in a real browser, against the real labeling service: every task
type is labelled with mouse and keyboard and the stored annotation is read back over gRPC."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.db import write_transaction
from atlas_labeling import prelabel

from ._helpers import (
    add_images,
    add_pairs,
    add_texts,
    assert_no_script_errors,
    draw_box,
    human_annotations,
    open_task,
    project,
    select_text,
    shot,
    sign_in,
    task_data,
    ttl,
    wait_next,
)
from .conftest import ADMIN, ANNOTATOR_A, ANNOTATOR_B, REVIEWER, Stack

pytestmark = pytest.mark.slow

CLASSES = [pb.LabelDefinition(name=n) for n in ("positive", "negative", "neutral")]


def classes_of(stack: Stack, pid: str, item_id: str) -> list[list[str]]:
    return [list(a.value.classes.labels) for a in human_annotations(stack, pid, item_id)]


def test_nothing_is_served_without_a_token_and_posts_need_the_csrf_token(
    stack: Stack, browser: Any, shots: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    for path in ("/", "/p/anything/next", "/img/p/i/0"):
        page.goto(stack.base_url + path)
        assert "/signin" in page.url, path
        assert page.locator("#token").is_visible()
    shot(page, shots, "signin")
    page.fill("#token", "not-a-token-of-this-service")
    page.click("#signin-button")
    assert "not valid" in page.locator("#signin-problem").inner_text()
    page.goto(stack.base_url + "/signin?next=/")
    page.fill("#token", ANNOTATOR_A)
    page.click("#signin-button")
    page.wait_for_url(stack.base_url + "/")
    cookie = next(c for c in context.cookies() if c["name"] == "atlas_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ANNOTATOR_A not in page.content()  # the token never reaches page scripts

    refused = page.request.post(stack.base_url + "/a/asg-x/skip", form={"request_id": "r"})
    assert refused.status == 403 and "CSRF" in refused.text()
    wrong = page.request.post(
        stack.base_url + "/a/asg-x/skip", headers={"X-CSRF-Token": "forged"}, form={}
    )
    assert wrong.status == 403
    csrf = page.evaluate("document.body.dataset.csrf")
    unknown = page.request.post(
        stack.base_url + "/a/asg-x/skip", headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert unknown.status == 404 and "asg-x" in unknown.text()  # the service's own message

    # Signing out ends the session: pages redirect to sign-in again.
    page.click("#signout")
    page.wait_for_url("**/signin")
    page.goto(stack.base_url + "/")
    assert "/signin" in page.url
    context.close()


def test_text_classification_single_label_with_shortcuts_and_skip(
    stack: Stack, browser: Any, shots: Path
) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES)
    ids = add_texts(stack, pid, ["The service was wonderful.", "Cold soup, rude staff."])
    page = sign_in(browser, stack, ANNOTATOR_A)
    assert page.locator(f"tr[data-project-id='{pid}']").is_visible()
    shot(page, shots, "projects")
    open_task(page, stack, pid)
    first = task_data(page)
    assert first["text"] == "The service was wonderful."
    page.keyboard.press("3")
    page.keyboard.press("1")  # single label: the last choice wins
    assert page.locator(".choice.on").count() == 1
    shot(page, shots, "text_classification")
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    assert classes_of(stack, pid, ids[0]) == [["positive"]]
    assert human_annotations(stack, pid, ids[0])[0].duration_ms > 0

    assert task_data(page)["text"] == "Cold soup, rude staff."
    url = page.url
    page.keyboard.press("Shift+S")  # skip
    wait_next(page, url)
    assert page.locator("#queue-empty").is_visible()
    assert human_annotations(stack, pid, ids[1]) == []
    assert_no_script_errors(page)
    page.context.close()


def test_text_classification_multi_label(stack: Stack, browser: Any, shots: Path) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES, multi_label=True)
    (item,) = add_texts(stack, pid, ["Great food, but the wait was long."])
    page = sign_in(browser, stack, ANNOTATOR_A)
    open_task(page, stack, pid)
    for key in ("1", "2", "3", "3"):  # toggles: the third one off again
        page.keyboard.press(key)
    shot(page, shots, "text_classification_multi")
    url = page.url
    page.click("#submit")
    wait_next(page, url)
    assert classes_of(stack, pid, item) == [["positive", "negative"]]
    assert_no_script_errors(page)
    page.context.close()


def test_spans_with_multibyte_text_and_a_relation(stack: Stack, browser: Any, shots: Path) -> None:
    labels = [
        pb.LabelDefinition(name="PER", kind="entity", color="#ffd166"),
        pb.LabelDefinition(name="LOC", kind="entity", color="#8ecae6"),
        pb.LabelDefinition(name="lives_in", kind="relation", allowed_pairs=["PER:LOC"]),
    ]
    pid = project(stack, pb.TASK_TYPE_TEXT_SPANS, labels)
    text = "Grüße aus Zürich 🙂 – Anna Müller 😀 wohnt seit 2019 in Zürich."
    (item,) = add_texts(stack, pid, [text])
    page = sign_in(browser, stack, ANNOTATOR_B)
    open_task(page, stack, pid)
    loc_start = text.index("Zürich 🙂")
    per_start = text.index("Anna Müller")
    page.keyboard.press("2")  # LOC
    select_text(page, text, loc_start, loc_start + len("Zürich 🙂"))
    page.keyboard.press("1")  # PER
    select_text(page, text, per_start, per_start + len("Anna Müller"))
    assert page.locator("#span-list tr[data-span-id]").count() == 2
    page.select_option("#rel-from", "s2")
    page.select_option("#rel-label", "lives_in")
    page.select_option("#rel-to", "s1")
    page.click("#add-relation")
    shot(page, shots, "text_spans")
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    (ann,) = human_annotations(stack, pid, item)
    spans = {s.span_id: (s.label, s.start, s.end, s.text) for s in ann.value.spans.spans}
    # Code points, as the service counts: "🙂" and "😀" are one each, not two UTF-16 units.
    assert spans == {
        "s1": ("LOC", loc_start, loc_start + 8, "Zürich 🙂"),
        "s2": ("PER", per_start, per_start + 11, "Anna Müller"),
    }
    assert text[per_start : per_start + 11] == "Anna Müller"
    (rel,) = ann.value.spans.relations
    assert (rel.source_span_id, rel.target_span_id, rel.label) == ("s2", "s1", "lives_in")
    assert_no_script_errors(page)
    page.context.close()


def test_image_classification(stack: Stack, browser: Any, shots: Path) -> None:
    labels = [pb.LabelDefinition(name=n) for n in ("cat", "dog", "bird")]
    pid = project(stack, pb.TASK_TYPE_IMAGE_CLASSIFICATION, labels)
    (item,) = add_images(stack, pid, [(640, 400)])
    page = sign_in(browser, stack, ANNOTATOR_A)
    open_task(page, stack, pid)
    page.wait_for_function(
        "() => (document.getElementById('item-image') || {}).naturalWidth === 640"
    )
    page.keyboard.press("2")
    shot(page, shots, "image_classification")
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    assert classes_of(stack, pid, item) == [["dog"]]
    assert_no_script_errors(page)
    page.context.close()


def _expect_box(box: pb.BoundingBox, rect: dict[str, float], drag: tuple, natural: tuple) -> None:
    sx, sy = natural[0] / rect["width"], natural[1] / rect["height"]
    x0, y0, x1, y1 = drag
    want = (x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy)
    got = (box.x, box.y, box.width, box.height)
    assert all(abs(g - w) <= 1.0 for g, w in zip(got, want)), (got, want)


def test_ocr_box_drawn_with_the_mouse_is_stored_in_image_pixels(
    stack: Stack, browser: Any, shots: Path
) -> None:
    pid = project(stack, pb.TASK_TYPE_OCR)
    (item,) = add_images(stack, pid, [(1200, 800)])
    page = sign_in(browser, stack, ANNOTATOR_A)
    open_task(page, stack, pid)
    page.wait_for_function(
        "() => (document.getElementById('box-image') || {}).naturalWidth === 1200"
    )
    drag = (101.0, 57.0, 333.0, 140.0)
    rect = draw_box(page, *drag)
    assert rect["width"] < 1000  # displayed smaller than the image: coordinates are scaled
    # Without a transcription the service refuses the box and the page says why.
    page.click("#submit")
    page.wait_for_selector("#flash .message.error")
    assert "transcription" in page.locator("#flash").inner_text()
    page.fill("input.transcription", "Bahnhofstraße 12")
    shot(page, shots, "ocr")
    url = page.url
    page.click("#submit")
    wait_next(page, url)
    (ann,) = human_annotations(stack, pid, item)
    (box,) = ann.value.boxes.boxes
    _expect_box(box, rect, drag, (1200, 800))
    assert box.text == "Bahnhofstraße 12"
    assert (ann.value.boxes.image_width, ann.value.boxes.image_height) == (1200, 800)
    assert_no_script_errors(page)
    page.context.close()


def test_face_boxes(stack: Stack, browser: Any, shots: Path) -> None:
    pid = project(stack, pb.TASK_TYPE_FACE_BOXES)
    (item,) = add_images(stack, pid, [(1000, 1400)])
    page = sign_in(browser, stack, ANNOTATOR_B)
    open_task(page, stack, pid)
    page.wait_for_function(
        "() => (document.getElementById('box-image') || {}).naturalWidth === 1000"
    )
    drags = [(40.0, 30.0, 160.0, 190.0), (300.5, 220.0, 420.0, 380.5)]
    rect = {}
    for drag in drags:
        rect = draw_box(page, *drag)
    shot(page, shots, "face_boxes")
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    (ann,) = human_annotations(stack, pid, item)
    assert len(ann.value.boxes.boxes) == 2
    for box, drag in zip(ann.value.boxes.boxes, drags):
        _expect_box(box, rect, drag, (1000, 1400))
    assert_no_script_errors(page)
    page.context.close()


def test_object_boxes_take_the_chosen_label(stack: Stack, browser: Any, shots: Path) -> None:
    labels = [pb.LabelDefinition(name=n) for n in ("car", "person")]
    pid = project(stack, pb.TASK_TYPE_OBJECT_BOXES, labels)
    (item,) = add_images(stack, pid, [(900, 600)])
    page = sign_in(browser, stack, ANNOTATOR_A)
    open_task(page, stack, pid)
    page.wait_for_function(
        "() => (document.getElementById('box-image') || {}).naturalWidth === 900"
    )
    page.keyboard.press("2")
    rect = draw_box(page, 10.0, 20.0, 200.0, 150.0)
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    (ann,) = human_annotations(stack, pid, item)
    (box,) = ann.value.boxes.boxes
    assert box.label == "person"
    _expect_box(box, rect, (10.0, 20.0, 200.0, 150.0), (900, 600))
    assert_no_script_errors(page)
    page.context.close()


def test_face_pair_side_by_side_with_shortcuts(stack: Stack, browser: Any, shots: Path) -> None:
    pid = project(stack, pb.TASK_TYPE_FACE_PAIR)
    ids = add_pairs(stack, pid, 2)
    page = sign_in(browser, stack, ANNOTATOR_A)
    answers = {}
    open_task(page, stack, pid)  # after each submit the app opens the next item itself
    for key, decision in (
        ("2", pb.FACE_PAIR_DECISION_DIFFERENT),
        ("1", pb.FACE_PAIR_DECISION_SAME),
    ):
        page.wait_for_function(
            "() => ['face-0', 'face-1']"
            ".every(id => (document.getElementById(id) || {}).naturalWidth > 0)"
        )
        left = page.locator("#face-0").bounding_box()
        right = page.locator("#face-1").bounding_box()
        assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 2
        item_id = task_data(page)["images"][0].split("/")[3]
        page.keyboard.press(key)
        if not answers:
            shot(page, shots, "face_pair")
        url = page.url
        page.keyboard.press("Enter")
        wait_next(page, url)
        answers[item_id] = decision
    assert set(answers) == set(ids)
    for item_id, decision in answers.items():
        (ann,) = human_annotations(stack, pid, item_id)
        assert ann.value.face_pair == decision
    assert_no_script_errors(page)
    page.context.close()


def _suggest(stack: Stack, pid: str, item_id: str, label: str, score: float) -> None:
    """A model pre-label stored the way a pre-labeling job stores it."""
    rt = stack.service.rt
    record = rt.items.get(pid, item_id)
    spec = rt.projects.get(pid).spec
    with write_transaction(rt.engine) as conn:
        suggestion = prelabel.Suggestion(record, label, score, "sentiment-model:3")
        prelabel.store(conn, spec, [suggestion], 0.5, datetime.now(timezone.utc))


def test_accept_or_fix_a_model_suggestion(stack: Stack, browser: Any, shots: Path) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES)
    ids = add_texts(stack, pid, ["Lovely staff, great coffee.", "Not bad at all."])
    for item_id in ids:
        _suggest(stack, pid, item_id, "negative", 0.81)
    page = sign_in(browser, stack, ANNOTATOR_B)
    done = {}
    open_task(page, stack, pid)
    assert "sentiment-model:3" in page.locator("#suggestion-box").inner_text()
    assert page.locator(".choice.on").inner_text().endswith("negative")  # pre-filled
    shot(page, shots, "suggestion")
    done[task_data(page)["text"]] = "negative"
    url = page.url
    page.keyboard.press("a")  # accept as suggested
    wait_next(page, url)
    done[task_data(page)["text"]] = "positive"
    page.keyboard.press("1")  # fix: the suggestion said negative
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    texts = dict(zip(["Lovely staff, great coffee.", "Not bad at all."], ids))
    for text, label in done.items():
        assert classes_of(stack, pid, texts[text]) == [[label]]
    assert_no_script_errors(page)
    page.context.close()


def test_review_accept_reject_and_correct(stack: Stack, browser: Any, shots: Path) -> None:
    pid = project(
        stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES, consensus=pb.CONSENSUS_METHOD_REVIEW
    )
    ids = add_texts(stack, pid, ["one", "two", "three"])
    with stack.client(ANNOTATOR_A) as annotator:
        for a in annotator.request_assignments(pid, 3):
            annotator.submit_annotation(
                a.assignment_id, pb.AnnotationValue(classes=pb.ClassLabels(labels=["neutral"]))
            )
    page = sign_in(browser, stack, REVIEWER)
    decisions = {}
    open_task(page, stack, pid, review=True)
    for action in ("accept", "reject", "correct"):
        data = task_data(page)
        assert data["mode"] == "review" and len(data["annotations"]) == 1
        item_id = data["images"] or data["text"]
        if action == "correct":
            page.keyboard.press("2")  # change the label in the editor, then save it
            page.fill("#review-comment", "clearly negative")
            shot(page, shots, "review")
        url = page.url
        page.click(f"#review-{action}")
        wait_next(page, url)
        decisions[item_id] = action
    items = {stack.admin.get_item(pid, i).content.text: stack.admin.get_item(pid, i) for i in ids}
    by_action = {action: items[text] for text, action in decisions.items()}
    assert by_action["accept"].status == pb.ITEM_STATUS_DONE
    assert list(by_action["accept"].final_value.classes.labels) == ["neutral"]
    assert by_action["reject"].status != pb.ITEM_STATUS_DONE
    assert by_action["correct"].status == pb.ITEM_STATUS_DONE
    assert list(by_action["correct"].final_value.classes.labels) == ["negative"]
    corrected = human_annotations(stack, pid, by_action["correct"].item_id)[0]
    assert corrected.review.comment == "clearly negative"
    assert_no_script_errors(page)
    page.context.close()


def test_heartbeat_keeps_a_working_annotators_lease_and_an_idle_one_expires(
    stack: Stack, browser: Any, shots: Path
) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES, assignment_ttl=ttl(2))
    ids = add_texts(stack, pid, ["kept alive", "left alone"])
    page = sign_in(browser, stack, ANNOTATOR_A)
    open_task(page, stack, pid)
    assert task_data(page)["text"] == "kept alive"
    deadline = time.monotonic() + 4.5  # more than twice the lease, while working
    x = 0
    while time.monotonic() < deadline:
        x = (x + 7) % 300
        page.mouse.move(200 + x, 300)
        page.wait_for_timeout(150)
    page.keyboard.press("2")
    url = page.url
    page.keyboard.press("Enter")
    wait_next(page, url)
    assert classes_of(stack, pid, ids[0]) == [["negative"]]

    assert task_data(page)["text"] == "left alone"
    page.wait_for_selector('#flash [data-reason="LEASE_EXPIRED"]', timeout=10_000)
    message = page.locator("#flash").inner_text()
    assert "lease" in message.lower() and "expired" in message.lower()
    assert page.locator("#submit").is_disabled()
    shot(page, shots, "lease_expired")
    page.keyboard.press("1")
    page.keyboard.press("Enter")  # ignored: the lease is gone
    page.wait_for_timeout(300)
    assert human_annotations(stack, pid, ids[1]) == []
    assert_no_script_errors(page)
    page.context.close()


def test_a_late_submit_shows_the_lease_expired_message(
    stack: Stack, browser: Any, shots: Path
) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES, assignment_ttl=ttl(1.5))
    (item,) = add_texts(stack, pid, ["too slow"])
    # The page's timers are frozen, so no heartbeat runs: the submit meets the expired lease.
    page = sign_in(browser, stack, ANNOTATOR_B, before=lambda p: p.clock.install())
    open_task(page, stack, pid)
    time.sleep(2.0)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector('#flash [data-reason="LEASE_EXPIRED"]')
    assert "expired" in page.locator("#flash").inner_text()
    assert page.locator("#submit").is_disabled()
    assert page.locator("#after-expiry").get_attribute("href") == f"/p/{pid}/next"
    assert human_annotations(stack, pid, item) == []
    # Coming back shows the lapsed lease as expired; "Get a new item" leases afresh.
    stale = task_data(page)["assignment_id"]
    page.goto(f"{stack.base_url}/p/{pid}/next")
    page.wait_for_selector('#flash [data-reason="LEASE_EXPIRED"]')
    assert task_data(page)["assignment_id"] == stale
    url = page.url
    page.click("#after-expiry")
    wait_next(page, url)
    fresh = task_data(page)
    assert fresh["assignment_id"] != stale and fresh["text"] == "too slow"
    assert not page.locator("#submit").is_disabled()
    assert_no_script_errors(page)
    page.context.close()


def test_two_browser_contexts_on_one_project_get_different_items(
    stack: Stack, browser: Any
) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES)
    add_texts(stack, pid, ["first", "second", "third"])
    one = sign_in(browser, stack, ANNOTATOR_A)
    two = sign_in(browser, stack, ANNOTATOR_B)
    open_task(one, stack, pid)
    open_task(two, stack, pid)
    a, b = task_data(one), task_data(two)
    assert a["assignment_id"] != b["assignment_id"] and a["text"] != b["text"]
    assert one.locator("#who").inner_text() != two.locator("#who").inner_text()
    # Reloading the page keeps the same lease instead of taking another item.
    one.reload()
    assert task_data(one)["assignment_id"] == a["assignment_id"]
    # So does coming back to the project: the lease in progress is resumed, not doubled.
    one.goto(stack.base_url + "/")
    one.click(f"tr[data-project-id='{pid}'] a:text('Label')")
    one.wait_for_selector("#task")
    assert task_data(one)["assignment_id"] == a["assignment_id"]
    leased = stack.admin.list_assignments(pid)
    assert len(leased) == 2
    assert_no_script_errors(one)
    assert_no_script_errors(two)
    one.context.close()
    two.context.close()


def test_admin_token_signs_in_too(stack: Stack, browser: Any) -> None:
    page = sign_in(browser, stack, ADMIN)
    assert page.locator("h1").inner_text() == "Projects"
    assert_no_script_errors(page)
    page.context.close()


def test_an_annotator_below_the_gold_bar_is_told_they_are_paused(
    stack: Stack, browser: Any, shots: Path
) -> None:
    pid = project(stack, pb.TASK_TYPE_TEXT_CLASSIFICATION, CLASSES)
    gold = pb.AnnotationValue(classes=pb.ClassLabels(labels=["positive"]))
    stack.admin.add_items(
        pid,
        [pb.NewItem(content=pb.ItemContent(text=f"gold {i}"), gold_value=gold) for i in range(3)],
    )
    add_texts(stack, pid, ["A regular item."])
    page = sign_in(browser, stack, ANNOTATOR_A)
    open_task(page, stack, pid)
    for _ in range(3):  # every gold item answered wrong, with the keyboard
        assert task_data(page)["text"].startswith("gold")
        url = page.url
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        wait_next(page, url)
    page.wait_for_selector("#paused")
    message = page.locator("#paused").inner_text()
    assert "paused" in message and "0 of 3 gold" in message
    shot(page, shots, "paused")
    assert_no_script_errors(page)
    page.context.close()

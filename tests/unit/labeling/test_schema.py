"""Label schemas and the validation of every annotation value kind: each bad input fails with
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import pytest

from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_labeling.image_size import UnknownImageFormat, image_size
from atlas_labeling.schema import (
    FACE_BOXES,
    FACE_PAIR,
    IMAGE_CLASSIFICATION,
    OBJECT_BOXES,
    OCR,
    TEXT_CLASSIFICATION,
    TEXT_SPANS,
    LabelDef,
    ProjectSpec,
    check_update,
    validate_spec,
    validate_value,
)
from atlas_labeling.values import (
    Box,
    Boxes,
    Classes,
    FacePair,
    ItemContent,
    Relation,
    Span,
    Spans,
    from_json,
    same_answer,
    to_json,
)
from tests.support.images import gif_bytes, jpeg_header, png_bytes

CLASSES = (LabelDef("cat"), LabelDef("dog"))
SPAN_LABELS = (
    LabelDef("PER", "entity"),
    LabelDef("ORG", "entity"),
    LabelDef("works_for", "relation", allowed_pairs=("PER:ORG",)),
)
IMAGE = ItemContent(image_uri="images/a.png", image_width=640, image_height=480)
TEXT = ItemContent(text="Zoë works at Ünïcode Ltd 😀 now and then")


def spec(task: str, labels: tuple[LabelDef, ...] = CLASSES, **kw: object) -> ProjectSpec:
    return validate_spec(ProjectSpec("p", task, labels, **kw))  # type: ignore[arg-type]


def invalid(field: str, fn: object, *args: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        fn(*args)  # type: ignore[operator]
    assert field in info.value.message, info.value.message
    return info.value


# ---- project specs ---------------------------------------------------------------------


def test_spec_defaults_and_bad_settings() -> None:
    assert spec(TEXT_CLASSIFICATION, overlap=0).overlap == 1
    invalid("spec.name", validate_spec, ProjectSpec(" ", TEXT_CLASSIFICATION, CLASSES))
    invalid("spec.task_type", validate_spec, ProjectSpec("p", "", CLASSES))
    invalid("spec.overlap", validate_spec, ProjectSpec("p", OCR, overlap=-1))
    invalid("spec.review_fraction", validate_spec, ProjectSpec("p", OCR, review_fraction=1.5))
    invalid(
        "spec.low_confidence_threshold",
        validate_spec,
        ProjectSpec("p", OCR, low_confidence_threshold=-0.1),
    )
    invalid("spec.assignment_ttl", validate_spec, ProjectSpec("p", OCR, assignment_ttl_s=0))
    invalid("spec.multi_label", validate_spec, ProjectSpec("p", OCR, multi_label=True))
    invalid("spec.labels", validate_spec, ProjectSpec("p", TEXT_CLASSIFICATION, ()))
    invalid(
        "spec.labels[1].name",
        validate_spec,
        ProjectSpec("p", TEXT_CLASSIFICATION, (LabelDef("a"), LabelDef("a"))),
    )
    invalid("spec.labels", validate_spec, ProjectSpec("p", TEXT_SPANS, CLASSES))
    invalid(
        "spec.labels[1].allowed_pairs",
        validate_spec,
        ProjectSpec(
            "p", TEXT_SPANS, (LabelDef("PER", "entity"), LabelDef("r", "relation", "", ("PER:X",)))
        ),
    )
    invalid("spec.labels", validate_spec, ProjectSpec("p", FACE_PAIR, CLASSES))


def test_labels_may_be_added_but_used_ones_never_removed_or_renamed() -> None:
    old = spec(TEXT_CLASSIFICATION)
    added = spec(TEXT_CLASSIFICATION, (*CLASSES, LabelDef("bird")))
    check_update(old, added, {("class", "cat")})
    renamed = spec(TEXT_CLASSIFICATION, (LabelDef("kitty"), LabelDef("dog")))
    with pytest.raises(FailedPrecondition) as info:
        check_update(old, renamed, {("class", "cat")})
    assert info.value.reason == "LABEL_IN_USE" and "'cat'" in info.value.message
    check_update(old, renamed, {("class", "dog")})  # an unused label may go
    with pytest.raises(InvalidArgument):
        check_update(old, spec(IMAGE_CLASSIFICATION), set())


# ---- classification ----------------------------------------------------------------------


def test_classes() -> None:
    single = spec(TEXT_CLASSIFICATION)
    assert validate_value(single, TEXT, Classes(("cat",))) == Classes(("cat",))
    e = invalid("value.classes.labels[0]", validate_value, single, TEXT, Classes(("cow",)))
    assert e.reason == "UNKNOWN_LABEL"
    invalid("value.classes.labels", validate_value, single, TEXT, Classes(("cat", "dog")))
    invalid("value.classes.labels", validate_value, single, TEXT, Classes(()))
    multi = spec(TEXT_CLASSIFICATION, multi_label=True)
    validate_value(multi, TEXT, Classes(("cat", "dog")))
    invalid("value.classes.labels", validate_value, multi, TEXT, Classes(("cat", "cat")))
    e = invalid("value.spans", validate_value, single, TEXT, Spans(()))
    assert e.reason == "WRONG_VALUE_KIND"
    invalid("value", validate_value, single, TEXT, None)


# ---- spans ---------------------------------------------------------------------------------


def test_span_offsets_are_code_points_including_multibyte_characters() -> None:
    s = spec(TEXT_SPANS, SPAN_LABELS)
    text = TEXT.text or ""
    start = text.index("Ünïcode")
    ok = Spans(
        (
            Span("a", 0, 3, "PER", "Zoë"),
            Span("b", start, start + len("Ünïcode Ltd"), "ORG", "Ünïcode Ltd"),
        ),
        (Relation("a", "b", "works_for"),),
    )
    assert validate_value(s, TEXT, ok) == ok
    # The emoji is one code point: "now" starts right after it and a space.
    now = text.index("now")
    validate_value(s, TEXT, Spans((Span("n", now, now + 3, "ORG", "now"),)))
    # A client counting UTF-8 bytes puts "Ünïcode" two positions further on: refused.
    byte_start = len(text[:start].encode())
    e = invalid(
        "value.spans.spans[0].text",
        validate_value,
        s,
        TEXT,
        Spans((Span("b", byte_start, byte_start + 11, "ORG", "Ünïcode Ltd"),)),
    )
    assert e.reason == "SPAN_TEXT_MISMATCH"
    # ... and one counting UTF-16 units is off by one after the emoji.
    utf16 = len(text[:now].encode("utf-16-le")) // 2
    invalid(
        "value.spans.spans[0].text",
        validate_value,
        s,
        TEXT,
        Spans((Span("n", utf16, utf16 + 3, "ORG", "now"),)),
    )


@pytest.mark.parametrize(
    "value, field, reason",
    [
        (Spans((Span("a", 3, 3, "PER"),)), "value.spans.spans[0]", "BAD_SPAN"),
        (Spans((Span("a", 4, 2, "PER"),)), "value.spans.spans[0]", "BAD_SPAN"),
        (Spans((Span("a", -1, 2, "PER"),)), "value.spans.spans[0]", "BAD_SPAN"),
        (Spans((Span("a", 0, 500, "PER"),)), "value.spans.spans[0].end", "SPAN_OUT_OF_TEXT"),
        (Spans((Span("a", 0, 2, "LOC"),)), "value.spans.spans[0].label", "UNKNOWN_LABEL"),
        (
            Spans((Span("a", 0, 2, "PER"), Span("a", 3, 4, "PER"))),
            "value.spans.spans[1].span_id",
            "BAD_SPAN",
        ),
        (
            Spans((Span("a", 0, 2, "PER"),), (Relation("a", "zz", "works_for"),)),
            "value.spans.relations[0].target_span_id",
            "MISSING_REGION",
        ),
        (
            Spans((Span("a", 0, 2, "PER"), Span("b", 3, 4, "ORG")), (Relation("a", "b", "knows"),)),
            "value.spans.relations[0].label",
            "UNKNOWN_LABEL",
        ),
        (
            Spans(
                (Span("a", 0, 2, "ORG"), Span("b", 3, 4, "PER")),
                (Relation("a", "b", "works_for"),),
            ),
            "value.spans.relations[0]",
            "BAD_RELATION",
        ),
    ],
)
def test_bad_spans(value: Spans, field: str, reason: str) -> None:
    e = invalid(field, validate_value, spec(TEXT_SPANS, SPAN_LABELS), TEXT, value)
    assert e.reason == reason


# ---- boxes -----------------------------------------------------------------------------------


def test_boxes_carry_the_image_size_and_stay_inside_it() -> None:
    s = spec(OBJECT_BOXES)
    stored = validate_value(s, IMAGE, Boxes((Box(0, 0, 640, 480, label="cat"),)))
    assert isinstance(stored, Boxes) and (stored.image_width, stored.image_height) == (640, 480)
    assert from_json(to_json(stored)) == stored
    for box, reason in [
        (Box(600, 0, 41, 10, label="cat"), "BOX_OUTSIDE_IMAGE"),
        (Box(-1, 0, 10, 10, label="cat"), "BOX_OUTSIDE_IMAGE"),
        (Box(0, 475, 10, 6, label="cat"), "BOX_OUTSIDE_IMAGE"),
        (Box(10, 10, 0, 10, label="cat"), "BAD_BOX"),
        (Box(10, 10, 10, -3, label="cat"), "BAD_BOX"),
        (Box(10, 10, 10, float("nan"), label="cat"), "BAD_BOX"),
        (Box(10, 10, 10, 10, label="cow"), "UNKNOWN_LABEL"),
        (Box(10, 10, 10, 10), "MISSING_VALUE"),
        # A 45-degree turn pushes the corners of a box touching the edge out of the image.
        (Box(0, 0, 100, 100, rotation=45, label="cat"), "BOX_OUTSIDE_IMAGE"),
    ]:
        e = invalid(
            "value.boxes.boxes[1]",
            validate_value,
            s,
            IMAGE,
            Boxes((Box(1, 1, 5, 5, label="dog"), box)),
        )
        assert e.reason == reason, box


def test_ocr_needs_text_and_faces_take_landmarks() -> None:
    ocr = spec(OCR, ())
    validate_value(ocr, IMAGE, Boxes((Box(1, 1, 50, 20, text="ATLAS"),)))
    e = invalid(
        "value.boxes.boxes[0].text",
        validate_value,
        ocr,
        IMAGE,
        Boxes((Box(1, 1, 50, 20, text="  "),)),
    )
    assert e.reason == "EMPTY_TEXT"
    faces = spec(FACE_BOXES, ())
    validate_value(faces, IMAGE, Boxes((Box(10, 10, 50, 50, landmarks=(20, 20, 40, 20)),)))
    validate_value(faces, IMAGE, Boxes(()))  # no face in the picture is an answer
    invalid(
        "value.boxes.boxes[0].landmarks",
        validate_value,
        faces,
        IMAGE,
        Boxes((Box(10, 10, 50, 50, landmarks=(20, 20, 40)),)),
    )
    invalid(
        "value.boxes.boxes[0].landmarks[2]",
        validate_value,
        faces,
        IMAGE,
        Boxes((Box(10, 10, 50, 50, landmarks=(20, 20, 700, 20)),)),
    )
    invalid(
        "value.boxes.boxes[0].label",
        validate_value,
        faces,
        IMAGE,
        Boxes((Box(10, 10, 50, 50, label="x"),)),
    )


def test_face_pair_enum() -> None:
    s = spec(FACE_PAIR, ())
    pair = ItemContent(image_uri="a", second_image_uri="b", image_width=1, image_height=1)
    for decision in ("same", "different", "unsure"):
        validate_value(s, pair, FacePair(decision))
    e = invalid("value.face_pair", validate_value, s, pair, FacePair("unknown(7)"))
    assert e.reason == "BAD_FACE_PAIR"
    invalid("value.classes", validate_value, s, pair, Classes(("same",)))


def test_gold_answer_matching() -> None:
    assert same_answer(Classes(("a", "b")), Classes(("b", "a")))
    assert not same_answer(Classes(("a",)), Classes(("b",)))
    assert same_answer(FacePair("same"), FacePair("same"))
    gold = Boxes((Box(10, 10, 100, 100, label="cat"),))
    assert same_answer(Boxes((Box(12, 11, 100, 98, label="cat"),)), gold)
    assert not same_answer(Boxes((Box(80, 80, 100, 100, label="cat"),)), gold)
    assert not same_answer(Boxes((Box(12, 11, 100, 98, label="dog"),)), gold)
    assert not same_answer(Classes(("cat",)), gold)


def test_image_size_from_headers() -> None:
    assert image_size(png_bytes(33, 17)) == (33, 17)
    assert image_size(jpeg_header(1920, 1080)) == (1920, 1080)
    assert image_size(gif_bytes(5, 9)) == (5, 9)
    with pytest.raises(UnknownImageFormat):
        image_size(b"hello world, not an image")
    with pytest.raises(UnknownImageFormat):
        image_size(png_bytes(3, 3)[:18])

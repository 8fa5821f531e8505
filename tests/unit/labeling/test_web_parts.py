"""The annotator web app's own small parts: settings from the environment, the answer the
page posts, image media types, and how an item names its images."""

from __future__ import annotations

import pytest

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.config import load_settings
from atlas_core.errors import ConfigError, InvalidArgument, NotFound
from atlas_labeling.web.config import LabelingWebSettings
from atlas_labeling.web.images import image_uri, media_type
from atlas_labeling.web.pages import EDITORS, parse_value, suggestion_of, task_slug
from tests.support.images import gif_bytes, jpeg_header, png_bytes


def test_settings_come_from_atlas_labeling_web_env() -> None:
    settings = load_settings(
        LabelingWebSettings,
        env_prefix="ATLAS_LABELING_WEB",
        env={
            "ATLAS_LABELING_WEB_PORT": "7999",
            "ATLAS_LABELING_WEB_LABELING__TARGET": "10.0.0.5:7104",
            "ATLAS_LABELING_WEB_LABELING__CA_FILE": "/etc/atlas/ca.pem",
            "ATLAS_LABELING_WEB_SESSION_SECRET": "s" * 32,
        },
    )
    assert settings.port == 7999 and settings.labeling.target == "10.0.0.5:7104"
    client = settings.labeling.client_settings("tok")
    assert client.token.get_secret_value() == "tok" and str(client.ca_file) == "/etc/atlas/ca.pem"
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(
            LabelingWebSettings, env_prefix="ATLAS_LABELING_WEB", env={"ATLAS_LABELING_WEB_X": "1"}
        )


def test_every_task_type_has_an_editor() -> None:
    slugs = {task_slug(v) for v in pb.TaskType.values() if v != pb.TASK_TYPE_UNSPECIFIED}
    assert slugs == set(EDITORS)


def test_the_posted_answer_is_parsed_not_judged() -> None:
    value = parse_value('{"spans": {"spans": [{"span_id": "s1", "start": 3, "end": 5}]}}')
    assert value.spans.spans[0].end == 5
    unknown = parse_value('{"classes": {"labels": ["no-such-label"]}}')
    assert list(unknown.classes.labels) == ["no-such-label"]  # the service decides
    for bad in ("", "{", '{"classes": 3}', '{"nope": 1}'):
        with pytest.raises(InvalidArgument):
            parse_value(bad)


def test_media_types_are_sniffed_from_the_bytes() -> None:
    assert media_type(png_bytes(2, 2)) == "image/png"
    assert media_type(jpeg_header(2, 2)) == "image/jpeg"
    assert media_type(gif_bytes(2, 2)) == "image/gif"
    assert media_type(b"<svg onload=alert(1)>") == "application/octet-stream"


def test_items_name_their_images() -> None:
    ref = common_pb2.ArtifactRef
    single = pb.Item(item_id="i", content=pb.ItemContent(image=ref(uri="s3://b/one.png")))
    pair = pb.Item(
        item_id="p",
        content=pb.ItemContent(
            image_pair=pb.ImagePair(first=ref(uri="s3://b/l.png"), second=ref(uri="s3://b/r.png"))
        ),
    )
    assert image_uri(single, 0) == "s3://b/one.png"
    assert image_uri(pair, 1) == "s3://b/r.png"
    for item, index in ((single, 1), (pair, 2), (pb.Item(item_id="t"), 0)):
        with pytest.raises(NotFound):
            image_uri(item, index)


def test_the_suggestion_comes_from_the_assignment_itself() -> None:
    def annotation(source: int, label: str, nanos: int, **kw: object) -> pb.Annotation:
        message = pb.Annotation(
            source=source,
            value=pb.AnnotationValue(classes=pb.ClassLabels(labels=[label])),
            **kw,  # type: ignore[arg-type]
        )
        message.create_time.FromNanoseconds(nanos)
        return message

    assignment = pb.Assignment(item=pb.Item(item_id="itm-1"))
    assert suggestion_of(assignment) is None
    assignment.item.annotations.extend(
        [
            annotation(pb.ANNOTATION_SOURCE_MODEL, "neg", 1, author="m:1", confidence=0.3),
            annotation(pb.ANNOTATION_SOURCE_MODEL, "pos", 2, author="m:2", confidence=0.8),
            annotation(pb.ANNOTATION_SOURCE_HUMAN, "neg", 3, author="ann"),
        ]
    )
    got = suggestion_of(assignment)
    assert got is not None and got["model"] == "m:2" and got["score"] == pytest.approx(0.8)
    assert got["value"]["classes"]["labels"] == ["pos"]

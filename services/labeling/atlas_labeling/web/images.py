"""Item images, streamed from the object store through the app: the browser never gets an S3
URL or credentials. Which object to read comes from the item as the service returns it to
the signed-in person (GetItem with their token), never from the request."""

from __future__ import annotations

from collections.abc import Iterator

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.errors import NotFound
from atlas_core.storage import ArtifactStore

# Raster formats a browser shows; anything else is served as opaque bytes (an SVG could
# carry script).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def media_type(head: bytes) -> str:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def image_uri(item: pb.Item, index: int) -> str:
    """URI of the item's ``index``-th image (0, or 1 for the second face of a pair)."""
    content = item.content
    kind = content.WhichOneof("content")
    if kind == "image" and index == 0:
        return content.image.uri
    if kind == "image_pair" and index in (0, 1):
        return (content.image_pair.first if index == 0 else content.image_pair.second).uri
    raise NotFound(f"item {item.item_id} has no image {index}", reason="NO_IMAGE")


def open_image(store: ArtifactStore, uri: str) -> tuple[str, Iterator[bytes]]:
    """The media type and the chunks of the image at ``uri`` (verified against its
    recorded sha256 as it streams)."""
    key = store.key_for_uri(uri)
    stream = store.open_stream(key)
    chunks = iter(stream)
    try:
        first = next(chunks, b"")
    except BaseException:
        stream.close()
        raise

    def rest() -> Iterator[bytes]:
        try:
            if first:
                yield first
            yield from chunks
        finally:
            stream.close()

    return media_type(first), rest()

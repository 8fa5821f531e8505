"""What the browser tests share: projects and items through the gRPC API, signing in, a
visible test picture, and mouse gestures at exact character/pixel positions."""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb

from .conftest import Stack


def rgb_png(width: int, height: int) -> bytes:
    """A colourful PNG (bands and a grid) so screenshots show where boxes fall."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            grid = x % 100 < 2 or y % 100 < 2
            row += (
                b"\x30\x30\x30"
                if grid
                else bytes(((x * 255) // width, (y * 255) // height, 160 + (x + y) % 64))
            )
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + chunk(b"IEND", b"")
    )


def project(stack: Stack, task: int, labels: list[pb.LabelDefinition] = (), **spec: Any) -> str:  # type: ignore[assignment]
    created = stack.admin.create_project(
        pb.ProjectSpec(
            name=f"web-{uuid.uuid4().hex[:8]}",
            task_type=task,  # type: ignore[arg-type]
            labels=list(labels),
            **spec,
        )
    )
    return created.project_id


def ttl(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def add_texts(stack: Stack, project_id: str, texts: list[str]) -> list[str]:
    return stack.admin.add_texts(project_id, texts)


def add_images(stack: Stack, project_id: str, sizes: list[tuple[int, int]]) -> list[str]:
    items = []
    for w, h in sizes:
        ref = stack.store.put_bytes(f"web-tests/{uuid.uuid4().hex}.png", rgb_png(w, h))
        items.append(pb.NewItem(content=pb.ItemContent(image=common_pb2.ArtifactRef(uri=ref.uri))))
    return list(stack.admin.add_items(project_id, items).item_ids)


def add_pairs(stack: Stack, project_id: str, count: int) -> list[str]:
    items = []
    for _ in range(count):
        refs = [
            stack.store.put_bytes(f"web-tests/{uuid.uuid4().hex}.png", rgb_png(w, h))
            for w, h in ((240, 300), (300, 240))
        ]
        pair = pb.ImagePair(
            first=common_pb2.ArtifactRef(uri=refs[0].uri),
            second=common_pb2.ArtifactRef(uri=refs[1].uri),
        )
        items.append(pb.NewItem(content=pb.ItemContent(image_pair=pair)))
    return list(stack.admin.add_items(project_id, items).item_ids)


def human_annotations(stack: Stack, project_id: str, item_id: str) -> list[pb.Annotation]:
    item = stack.admin.get_item(project_id, item_id)
    return [a for a in item.annotations if a.source == pb.ANNOTATION_SOURCE_HUMAN]


# Script errors and Content-Security-Policy violations seen by each page (by id(page)).
PAGE_ERRORS: dict[int, list[str]] = {}


def watch_errors(page: Any) -> None:
    errors = PAGE_ERRORS.setdefault(id(page), [])
    page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if "Content Security Policy" in msg.text or "Uncaught" in msg.text
            else None
        ),
    )


def assert_no_script_errors(page: Any) -> None:
    assert PAGE_ERRORS.get(id(page), []) == []


def sign_in(browser: Any, stack: Stack, token: str, *, before: Any = None) -> Any:
    """A fresh browser context signed in with ``token``; returns its page on the project
    list. ``before(page)`` runs before the first page loads (e.g. to install a clock)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    watch_errors(page)
    if before is not None:
        before(page)
    page.goto(stack.base_url + "/")
    assert "/signin" in page.url
    page.fill("#token", token)
    page.click("#signin-button")
    page.wait_for_url(stack.base_url + "/")
    return page


def open_task(page: Any, stack: Stack, project_id: str, *, review: bool = False) -> None:
    suffix = "review/next" if review else "next"
    page.goto(f"{stack.base_url}/p/{project_id}/{suffix}")
    page.wait_for_selector("#task, #queue-empty")
    page.wait_for_function("() => document.readyState === 'complete'")


def wait_next(page: Any, old_url: str) -> None:
    """After a submit the app sends the browser on to the next item (or the empty queue)."""
    page.wait_for_function("u => window.location.href !== u", arg=old_url)
    page.wait_for_selector("#task, #queue-empty")
    page.wait_for_function("() => document.readyState === 'complete'")


def task_data(page: Any) -> dict[str, Any]:
    return page.evaluate("JSON.parse(document.getElementById('task-data').textContent)")


# Bounding box of the code point at UTF-16 index ``u16`` (of length ``n`` units) inside
# #span-text, whatever text nodes the marks split it into.
_CHAR_RECT = """([u16, n]) => {
  const root = document.getElementById('span-text');
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  let seen = 0, node;
  while ((node = walker.nextNode())) {
    const len = node.textContent.length;
    if (u16 < seen + len) {
      const r = document.createRange();
      r.setStart(node, u16 - seen);
      r.setEnd(node, u16 - seen + n);
      const b = r.getClientRects()[0];
      return {left: b.left, right: b.right, top: b.top, bottom: b.bottom};
    }
    seen += len;
  }
  return null;
}"""


def select_text(page: Any, text: str, start_cp: int, end_cp: int) -> None:
    """Drag the mouse from the first to the last code point of [start_cp, end_cp)."""
    u16 = [0]
    for ch in text:
        u16.append(u16[-1] + (2 if ord(ch) > 0xFFFF else 1))
    first = page.evaluate(_CHAR_RECT, [u16[start_cp], u16[start_cp + 1] - u16[start_cp]])
    last = page.evaluate(_CHAR_RECT, [u16[end_cp - 1], u16[end_cp] - u16[end_cp - 1]])
    y1 = (first["top"] + first["bottom"]) / 2
    y2 = (last["top"] + last["bottom"]) / 2
    page.mouse.move(first["left"] + 1, y1)
    page.mouse.down()
    page.mouse.move(last["right"] - 1, y2, steps=8)
    page.mouse.up()


def draw_box(page: Any, x0: float, y0: float, x1: float, y1: float) -> dict[str, float]:
    """Drag on the image from (x0, y0) to (x1, y1), in CSS pixels relative to the displayed
    image; returns the displayed image's rectangle."""
    rect = page.evaluate(
        "() => { const b = document.getElementById('box-image').getBoundingClientRect();"
        " return {x: b.x, y: b.y, width: b.width, height: b.height}; }"
    )
    page.mouse.move(rect["x"] + x0, rect["y"] + y0)
    page.mouse.down()
    page.mouse.move(rect["x"] + x1, rect["y"] + y1, steps=10)
    page.mouse.up()
    return rect


def shot(page: Any, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

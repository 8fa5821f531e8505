"""Export files: label rows as Parquet or JSON Lines parts, or one COCO document of the
latest box labels. Parts are written to a local temporary file in chunks (flat memory) and
uploaded under a deterministic key, so a resumed export rewrites a half-done part instead of
adding a second one."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atlas_core.storage import ArtifactRef, ArtifactStore
from atlas_labeling.labels import LabelRow
from atlas_labeling.values import Boxes

LABEL_SCHEMA = pa.schema(
    [
        ("entity_key", pa.string()),
        ("label", pa.string()),
        ("value", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("label_created_time", pa.timestamp("us", tz="UTC")),
        ("label_version", pa.int32()),
        ("annotators", pa.list_(pa.string())),
        ("agreement", pa.float64()),
        ("source", pa.string()),
        ("item_id", pa.string()),
        ("seq", pa.int64()),
    ]
)
EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl", "coco": "json"}


def write_part(
    store: ArtifactStore,
    key: str,
    fmt: str,
    chunks: Iterable[list[LabelRow]],
    work_dir: Path,
) -> tuple[ArtifactRef, int, int]:
    """Write the rows of ``chunks`` to one part; returns (ref, rows, last seq)."""
    rows = last = 0
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "part"
        writer: pq.ParquetWriter | None = None
        with open(path, "w", encoding="utf-8") as text:
            if fmt == "parquet":
                writer = pq.ParquetWriter(path, LABEL_SCHEMA)
            for chunk in chunks:
                records = [row.as_record() for row in chunk]
                if writer is not None:
                    writer.write_table(pa.Table.from_pylist(records, schema=LABEL_SCHEMA))
                else:
                    for record in records:
                        text.write(json.dumps(record, default=_iso) + "\n")
                rows += len(chunk)
                last = chunk[-1].seq
        if writer is not None:
            writer.close()
        ref = store.put_file(key, path)
    return ref, rows, last


def _iso(value: Any) -> str:
    return value.isoformat()


def write_coco(
    store: ArtifactStore,
    key: str,
    chunks: Iterable[list[LabelRow]],
    image_uri: Callable[[str], str],
    categories: list[str],
    work_dir: Path,
) -> tuple[ArtifactRef, int, int]:
    """One COCO document of the latest box label per item; returns (ref, boxes, last seq)."""
    latest: dict[str, LabelRow] = {}
    last = 0
    for chunk in chunks:
        for row in chunk:
            latest[row.item_id] = row  # rows come in seq order: the last one wins
            last = row.seq
    names = list(categories) or ["object"]
    ids = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, (item_id, row) in enumerate(sorted(latest.items()), start=1):
        value = row.value
        if not isinstance(value, Boxes):
            continue
        images.append(
            {
                "id": n,
                "file_name": image_uri(item_id),
                "width": value.image_width,
                "height": value.image_height,
                "atlas_item_id": item_id,
                "atlas_entity_key": row.entity_key,
            }
        )
        for box in value.boxes:
            annotation: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": n,
                "category_id": ids.get(box.label, ids[names[0]]),
                "bbox": [box.x, box.y, box.width, box.height],
                "area": box.width * box.height,
                "iscrowd": 0,
            }
            if box.rotation:
                annotation["rotation"] = box.rotation
            if box.text:
                annotation["attributes"] = {"text": box.text}
            if box.landmarks:
                annotation["landmarks"] = list(box.landmarks)  # flat x,y pairs
            annotations.append(annotation)
    document = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in ids.items()],
    }
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "coco.json"
        path.write_text(json.dumps(document))
        ref = store.put_file(key, path)
    return ref, len(annotations), last

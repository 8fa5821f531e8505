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
from atlas_labeling.values import Boxes, from_json

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


def write_part_file(path: Path, fmt: str, batches: Iterable[pa.RecordBatch]) -> tuple[int, int]:
    """Write ``batches`` (LABEL_SCHEMA) to one local part file, streamed batch by batch (one
    Parquet row group each): flat memory. Returns (rows, last seq)."""
    rows = last = 0
    seq = LABEL_SCHEMA.get_field_index("seq")
    if fmt == "parquet":
        with pq.ParquetWriter(path, LABEL_SCHEMA) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
                last = batch.column(seq)[-1].as_py()
        return rows, last
    with open(path, "w", encoding="utf-8") as text:
        for batch in batches:
            for record in batch.to_pylist():
                text.write(json.dumps(record, default=_iso) + "\n")
            rows += batch.num_rows
            last = batch.column(seq)[-1].as_py()
    return rows, last


def write_part(
    store: ArtifactStore,
    key: str,
    fmt: str,
    batches: Iterable[pa.RecordBatch],
    work_dir: Path,
) -> tuple[ArtifactRef, int, int]:
    """Write ``batches`` to one part and upload it; returns (ref, rows, last seq)."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "part"
        rows, last = write_part_file(path, fmt, batches)
        ref = store.put_file(key, path)
    return ref, rows, last


def _iso(value: Any) -> str:
    return value.isoformat()


def write_coco(
    store: ArtifactStore,
    key: str,
    batches: Iterable[pa.RecordBatch],
    image_uri: Callable[[str], str],
    categories: list[str],
    work_dir: Path,
) -> tuple[ArtifactRef, int, int]:
    """One COCO document of the latest box label per item; returns (ref, boxes, last seq)."""
    latest: dict[str, tuple[str, str]] = {}  # item id -> (entity key, value JSON)
    last = 0
    for batch in batches:
        for item_id, entity_key, value in zip(
            batch.column("item_id").to_pylist(),
            batch.column("entity_key").to_pylist(),
            batch.column("value").to_pylist(),
        ):
            latest[item_id] = (entity_key, value)  # rows come in seq order: the last one wins
        if batch.num_rows:
            last = batch.column("seq")[-1].as_py()
    names = list(categories) or ["object"]
    ids = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, (item_id, (entity_key, raw)) in enumerate(sorted(latest.items()), start=1):
        value = from_json(json.loads(raw))
        if not isinstance(value, Boxes):
            continue
        images.append(
            {
                "id": n,
                "file_name": image_uri(item_id),
                "width": value.image_width,
                "height": value.image_height,
                "atlas_item_id": item_id,
                "atlas_entity_key": entity_key,
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

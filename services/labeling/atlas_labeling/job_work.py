"""The body of each labeling job, run in a job subprocess with its own runtime.

Import: the manifest is streamed in batches; every item gets an external id (the manifest's
column, else "<manifest sha256>:<row>"), so re-running or resuming an import adds nothing
twice. Export: label rows are streamed after a cursor into parts with deterministic keys and
a checkpoint after each part; the export is recorded (and registered with the data service)
last, under the job's id, so a resumed export neither loses nor repeats a row.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timezone
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import insert, select

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas_core.clients import DataClient
from atlas_core.clients.retry import Backoff
from atlas_core.clients.serving import ServingClient, entity_row, feature_row
from atlas_core.db import write_transaction
from atlas_core.errors import AtlasError, FailedPrecondition, InvalidArgument
from atlas_core.jobs import JobContext
from atlas_core.rpc import ClientSettings, error_from_rpc
from atlas_core.storage import ArtifactRef
from atlas_labeling import (
    autolabel,
    bad_cases,
    export_reader,
    exporting,
    ground_truth_feedback,
    issues,
    manifests,
    prelabel,
)
from atlas_labeling.items import NewItem, row_to_item
from atlas_labeling.jobs import FORMATS, ITEM_STATUS, export_sources, parse_cursor
from atlas_labeling.ordering import refresh_order
from atlas_labeling.projects import utcnow
from atlas_labeling.runtime import LabelingRuntime
from atlas_labeling.schema import CONTENT_KIND
from atlas_labeling.tables import exports, items
from atlas_labeling.values import ItemContent

IMPORT_BATCH = 500
READ_CHUNK = 10_000  # label rows a query (and a Parquet row group)


def ref_dict(ref: ArtifactRef) -> dict[str, Any]:
    return {"uri": ref.uri, "sha256": ref.sha256, "size": ref.size}


# ---- import --------------------------------------------------------------------------------


def import_items(rt: LabelingRuntime, ctx: JobContext, spec: pb.ImportSpec) -> dict[str, Any]:
    if spec.WhichOneof("source") == "bad_cases":
        return import_bad_cases(rt, ctx, spec)
    m = spec.manifest
    project = rt.projects.get(spec.project_id, with_stats=False)
    kind = CONTENT_KIND[project.spec.task_type]
    key = rt.artifacts.key_for_uri(m.manifest.uri)
    columns = [
        c
        for c in (
            m.content_column,
            m.second_content_column if kind == "image_pair" else "",
            m.entity_column,
            m.label_time_column,
            m.external_id_column,
        )
        if c
    ]
    state = ctx.last_checkpoint() or {"row": 0, "added": 0, "skipped": 0}
    with tempfile.TemporaryDirectory(dir=rt.work_root) as tmp:
        path = Path(tmp) / "manifest"
        source = rt.artifacts.download_to_file(key, path)
        ctx.report(0.0, f"importing from row {state['row']}")
        batches = manifests.read_batches(
            path, manifests.is_jsonl(key), columns, state["row"], IMPORT_BATCH
        )
        for first, rows in batches:
            ctx.raise_if_cancelled()
            new = [
                _new_item(m, kind, row, f"{source.sha256[:16]}:{first + i}", first + i)
                for i, row in enumerate(rows)
            ]
            try:
                ids, skipped = rt.items.add(spec.project_id, new)
            except AtlasError as exc:
                raise type(exc)(
                    f"manifest rows {first}..{first + len(rows) - 1}: {exc.message}",
                    reason=exc.reason,
                ) from None
            state = {
                "row": first + len(rows),
                "added": state["added"] + len(ids) - skipped,
                "skipped": state["skipped"] + skipped,
            }
            ctx.checkpoint(state)
            ctx.report(None, f"{state['row']} rows read, {state['added']} items added")
    return {
        "item_result": {
            "items_processed": state["row"],
            "items_added": state["added"],
            "items_skipped": state["skipped"],
        }
    }


def import_bad_cases(rt: LabelingRuntime, ctx: JobContext, spec: pb.ImportSpec) -> dict[str, Any]:
    b = spec.bad_cases
    project = rt.projects.get(spec.project_id, with_stats=False)
    kind = CONTENT_KIND[project.spec.task_type]
    start_us = b.start_time.ToMicroseconds() if b.HasField("start_time") else None
    end_us = b.end_time.ToMicroseconds() if b.HasField("end_time") else None
    state = ctx.last_checkpoint() or {"file": 0, "rows": 0, "added": 0, "skipped": 0}
    with serving_client(rt) as client:
        files = sorted(
            _capture_files(client, b.endpoint_name),
            key=lambda f: (f.start_time.ToMicroseconds(), f.artifact.uri),
        )
    for index in range(state["file"], len(files)):
        ctx.raise_if_cancelled()
        if b.max_items and state["added"] + state["skipped"] >= b.max_items:
            break
        f = files[index]
        if (end_us is not None and f.start_time.ToMicroseconds() >= end_us) or (
            start_us is not None and f.end_time.ToMicroseconds() < start_us
        ):
            state = {**state, "file": index + 1}
            continue
        data = rt.artifacts.get_bytes(rt.artifacts.key_for_uri(f.artifact.uri))
        table = pq.read_table(io.BytesIO(data))
        column = bad_cases.feature_column(table.column_names, b.content_column)
        chosen = bad_cases.select_rows(table.to_pylist(), b.max_confidence, start_us, end_us)
        if b.max_items:
            chosen = chosen[: b.max_items - state["added"] - state["skipped"]]
        new = [
            bad_cases.to_item(row, column, kind, f"{f.artifact.sha256[:16]}:{n}", b.endpoint_name)
            for n, row in chosen
        ]
        added = skipped = 0
        for start in range(0, len(new), IMPORT_BATCH):
            part = new[start : start + IMPORT_BATCH]
            ids, part_skipped = rt.items.add(spec.project_id, part)
            added += len(ids) - part_skipped
            skipped += part_skipped
        state = {
            "file": index + 1,
            "rows": state["rows"] + len(chosen),
            "added": state["added"] + added,
            "skipped": state["skipped"] + skipped,
        }
        ctx.checkpoint(state)
        ctx.report(
            None, f"{state['file']}/{len(files)} capture files, {state['added']} items added"
        )
    return {
        "item_result": {
            "items_processed": state["rows"],
            "items_added": state["added"],
            "items_skipped": state["skipped"],
            "queued_for_correction": state["added"] + state["skipped"],
        }
    }


def _capture_files(client: ServingClient, endpoint: str) -> list[Any]:
    try:
        files: list[Any] = []
        token = ""
        while True:
            resp = client.stub.ListCaptureFiles(
                serving_pb.ListCaptureFilesRequest(
                    endpoint_name=endpoint,
                    page=common_pb2.PageRequest(page_size=1000, page_token=token),
                ),
                timeout=client.timeout,
            )
            files.extend(resp.files)
            token = resp.page.next_page_token
            if not token:
                return files
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None


def _new_item(
    m: pb.ManifestImport, kind: str, row: dict[str, Any], default_id: str, number: int
) -> NewItem:
    value = row.get(m.content_column)
    if value is None:
        raise InvalidArgument(
            f"manifest row {number}: {m.content_column} is empty", reason="BAD_CONTENT"
        )
    if kind == "text":
        content = ItemContent(text=str(value))
    elif kind == "image":
        content = ItemContent(image_uri=str(value))
    else:
        content = ItemContent(
            image_uri=str(value), second_image_uri=str(row.get(m.second_content_column) or "")
        )
    external = row.get(m.external_id_column) if m.external_id_column else None
    return NewItem(
        content=content,
        entity_id=str(row.get(m.entity_column) or "") if m.entity_column else "",
        label_time=manifests.to_datetime(
            row.get(m.label_time_column), f"manifest row {number}: {m.label_time_column}"
        )
        if m.label_time_column
        else None,
        external_id=str(external) if external not in (None, "") else default_id,
    )


# ---- export --------------------------------------------------------------------------------


def _filter(spec: pb.ExportSpec) -> export_reader.LabelFilter:
    utc = timezone.utc
    return export_reader.LabelFilter(
        project_id=spec.project_id,
        sources=export_sources(spec),
        min_agreement=spec.min_agreement,
        start=spec.start_time.ToDatetime(tzinfo=utc) if spec.HasField("start_time") else None,
        end=spec.end_time.ToDatetime(tzinfo=utc) if spec.HasField("end_time") else None,
    )


def export_labels(rt: LabelingRuntime, ctx: JobContext, spec: pb.ExportSpec) -> dict[str, Any]:
    project = rt.projects.get(spec.project_id, with_stats=False)
    fmt = FORMATS[spec.format]
    first = parse_cursor(spec.after_cursor)
    where = _filter(spec)
    state = ctx.last_checkpoint() or {"cursor": first, "parts": [], "rows": 0, "counts": {}}
    prefix = f"exports/{spec.project_id}/{ctx.job_id}"
    if fmt == "coco":
        counts: dict[str, int] = {}
        ref, rows, last = exporting.write_coco(
            rt.artifacts,
            f"{prefix}/coco.json",
            _counting(
                export_reader.read_batches(rt.engine, where, first, None, READ_CHUNK), counts
            ),
            lambda item_id: _image_uri(rt, item_id),
            [label.name for label in project.spec.labels if label.kind == "class"],
            rt.work_root,
        )
        state = {
            "cursor": max(last, first),
            "parts": [ref_dict(ref)],
            "rows": rows,
            "counts": counts,
        }
    else:
        state = _export_parts(rt, ctx, spec, fmt, where, prefix, state)
    if not state["rows"]:
        raise FailedPrecondition("no label row matches the export", reason="NO_LABELS")
    feedback = _feed_ground_truth(rt, ctx, where, first, state["cursor"])
    return {"export": _finish(rt, ctx, spec, fmt, state, feedback)}


def _feed_ground_truth(
    rt: LabelingRuntime,
    ctx: JobContext,
    where: export_reader.LabelFilter,
    first: int,
    last: int,
) -> dict[str, Any] | None:
    """Attach the exported human labels of bad-case items to serving (ground_truth_feedback);
    None when the project has no item made from a served prediction."""
    if not ground_truth_feedback.project_has_served_items(rt.engine, where.project_id):
        return None
    found, not_sent = ground_truth_feedback.outcomes(
        rt.engine,
        where.project_id,
        export_reader.read_batches(rt.engine, where, first, None, READ_CHUNK),
        last,
    )
    if not found:
        return {"not_sent": not_sent}
    ctx.report(None, f"attaching {len(found)} labels to serving as ground truth")

    def retrying(attempt: int, error: AtlasError) -> None:
        ctx.raise_if_cancelled()
        ctx.report(None, f"serving unreachable (attempt {attempt}): {error.message}")

    with serving_client(rt) as client:
        return ground_truth_feedback.attach(
            client,
            ctx.job_id,
            found,
            not_sent,
            Backoff(budget_s=rt.settings.jobs.peer_retry_seconds),
            on_retry=retrying,
        )


def _export_parts(
    rt: LabelingRuntime,
    ctx: JobContext,
    spec: pb.ExportSpec,
    fmt: str,
    where: export_reader.LabelFilter,
    prefix: str,
    state: dict[str, Any],
) -> dict[str, Any]:
    """Parts of ``rows_per_part`` rows, each written to a local file and uploaded under a
    deterministic key while the next part is read; the checkpoint after a part is taken only
    once its upload is done, so a crash re-writes at most the parts not checkpointed."""
    per_part = spec.rows_per_part or 100_000
    with tempfile.TemporaryDirectory(dir=rt.work_root) as tmp, ThreadPoolExecutor(1) as uploads:
        pending: tuple[Future[ArtifactRef], dict[str, Any]] | None = None

        def settle() -> None:
            nonlocal state, pending
            if pending is None:
                return
            future, done = pending
            pending = None
            state = {**done, "parts": [*done["parts"], ref_dict(future.result())]}
            ctx.checkpoint(state)
            ctx.report(None, f"{state['rows']} label rows exported")

        cursor, rows_so_far, counts, parts = (
            state["cursor"],
            state["rows"],
            dict(state["counts"]),
            len(state["parts"]),
        )
        try:
            while True:
                ctx.raise_if_cancelled()
                batches = export_reader.read_ahead(
                    export_reader.read_batches(rt.engine, where, cursor, per_part, READ_CHUNK)
                )
                peek = next(batches, None)
                if peek is None:
                    break
                key = f"{prefix}/part-{parts:05d}.{exporting.EXTENSIONS[fmt]}"
                path = Path(tmp) / f"part-{parts:05d}"
                rows, last = exporting.write_part_file(
                    path, fmt, _counting(_prepend(peek, batches), counts)
                )
                settle()  # the previous part's upload, then its checkpoint
                done = {
                    "cursor": last,
                    "parts": state["parts"],
                    "rows": rows_so_far + rows,
                    "counts": dict(counts),
                }
                pending = (uploads.submit(_upload, rt, key, path), done)
                cursor, rows_so_far, parts = last, rows_so_far + rows, parts + 1
                if rows < per_part:
                    break
            settle()
        finally:
            if pending is not None:
                pending[0].cancel()
    return state


def _upload(rt: LabelingRuntime, key: str, path: Path) -> ArtifactRef:
    try:
        return rt.artifacts.put_file(key, path)
    finally:
        path.unlink(missing_ok=True)


def _counting(
    batches: Iterator[pa.RecordBatch], counts: dict[str, int]
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        export_reader.count_labels(batch, counts)
        yield batch


def _prepend(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _image_uri(rt: LabelingRuntime, item_id: str) -> str:
    with rt.engine.connect() as conn:
        raw = conn.execute(select(items.c.content).where(items.c.item_id == item_id)).scalar_one()
    return str(json.loads(raw).get("image_uri", ""))


def _finish(
    rt: LabelingRuntime,
    ctx: JobContext,
    spec: pb.ExportSpec,
    fmt: str,
    state: dict[str, Any],
    feedback: dict[str, Any] | None,
) -> dict[str, Any]:
    export_id = ctx.job_id
    with rt.engine.connect() as conn:
        known = conn.execute(
            select(exports.c.body).where(exports.c.export_id == export_id)
        ).scalar()
    if known is not None:
        return dict(json.loads(known))  # finished before a crash: the same record
    prefix = f"exports/{spec.project_id}/{export_id}"
    manifest = {
        "export_id": export_id,
        "project_id": spec.project_id,
        "format": fmt,
        "columns": LABEL_COLUMNS if fmt != "coco" else [],
        "after_cursor": spec.after_cursor,
        "cursor": str(state["cursor"]),
        "rows": state["rows"],
        "parts": state["parts"],
    }
    ref = rt.artifacts.put_bytes(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    record: dict[str, Any] = {
        **manifest,
        "artifact": ref_dict(ref),
        "label_counts": state["counts"],
        "dataset": None,
        "create_time": utcnow().isoformat(),
    }
    if feedback is not None:
        record["ground_truth"] = feedback
    if spec.dataset_name and fmt == "parquet":
        record["dataset"] = _register(rt, spec, export_id, state["parts"])
    with rt.engine.begin() as conn:
        conn.execute(
            insert(exports).values(
                export_id=export_id,
                project_id=spec.project_id,
                body=json.dumps(record),
                created_at=utcnow(),
            )
        )
    return record


LABEL_COLUMNS = [field.name for field in exporting.LABEL_SCHEMA]


def _register(
    rt: LabelingRuntime, spec: pb.ExportSpec, export_id: str, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    peer = rt.settings.data
    if not peer.target:
        raise FailedPrecondition(
            "dataset_name is set but the labeling service has no data service configured "
            "(data.target)",
            reason="NO_DATA_SERVICE",
        )
    settings = ClientSettings(target=peer.target, token=peer.token)
    with DataClient(settings) as client:
        dataset = client.register_dataset(
            spec.dataset_name,
            [
                common_pb2.ArtifactRef(uri=p["uri"], sha256=p["sha256"], size_bytes=p["size"])
                for p in parts
            ],
            label_column="label",
            entity_column="entity_key",
            timestamp_column="event_time",
            # The export it holds: a training job refuses it until it is matched to features.
            parents=[
                common_pb2.LineageParent(
                    role="labels",
                    label_set=common_pb2.LabelSetRef(
                        project_id=spec.project_id, export_id=export_id
                    ),
                )
            ],
            # The same id on a resumed attempt: registered once.
            request_id=f"labeling-export-{export_id}",
        )
    return {"dataset_id": dataset.ref.dataset_id, "version": dataset.ref.version}


# ---- pre-labeling ----------------------------------------------------------------------------


def serving_client(rt: LabelingRuntime) -> ServingClient:
    peer = rt.settings.serving
    if not peer.target:
        raise FailedPrecondition(
            "no serving service is configured (serving.target)", reason="NO_SERVING_SERVICE"
        )
    return ServingClient(ClientSettings(target=peer.target, token=peer.token))


def _predict_batch(
    client: ServingClient, request: serving_pb.PredictBatchRequest
) -> serving_pb.PredictBatchResponse:
    try:
        return client.stub.PredictBatch(request, timeout=client.timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None


def prelabel_items(rt: LabelingRuntime, ctx: JobContext, spec: pb.PrelabelSpec) -> dict[str, Any]:
    project = rt.projects.get(spec.project_id, with_stats=False)
    threshold = spec.low_confidence_threshold or project.spec.low_confidence_threshold
    statuses = [ITEM_STATUS.get(s, "") for s in spec.statuses] or ["unlabeled"]
    size = spec.batch_size or 500
    state = ctx.last_checkpoint() or {
        "after_seq": 0,
        "processed": 0,
        "stored": 0,
        "low": 0,
        "errors": 0,
    }
    with serving_client(rt) as client:
        while True:
            ctx.raise_if_cancelled()
            with rt.engine.connect() as conn:
                rows = conn.execute(
                    select(items)
                    .where(
                        (items.c.project_id == spec.project_id)
                        & items.c.status.in_(statuses)
                        & (items.c.seq > state["after_seq"])
                    )
                    .order_by(items.c.seq)
                    .limit(size)
                ).all()
            if not rows:
                break
            batch = [row_to_item(r) for r in rows]
            resp = _predict_batch(
                client,
                serving_pb.PredictBatchRequest(
                    endpoint_name=spec.endpoint_name,
                    rows=[
                        entity_row(i.entity_id) if spec.use_entity_id else feature_row(i.metadata)
                        for i in batch
                    ],
                    options=serving_pb.PredictOptions(return_all_scores=True),
                    request_id=f"{ctx.job_id}-{state['after_seq']}",
                ),
            )
            version = f"{resp.model.model_name}:{resp.model.version}"
            suggestions = [
                prelabel.Suggestion(
                    item,
                    spec.label_mapping.get(p.label, p.label),
                    p.scores[p.label] if p.label in p.scores else p.value,
                    version,
                    {spec.label_mapping.get(k, k): v for k, v in p.scores.items()},
                )
                for item, p in zip(batch, resp.predictions)
            ]
            with rt.engine.begin() as conn:
                stored, low, errors = prelabel.store(
                    conn, project.spec, suggestions, threshold, utcnow()
                )
            state = {
                "after_seq": rows[-1].seq,
                "processed": state["processed"] + len(batch),
                "stored": state["stored"] + stored,
                "low": state["low"] + low,
                "errors": state["errors"] + errors,
            }
            state["version"] = version
            ctx.checkpoint(state)
            ctx.report(None, f"{state['processed']} items pre-labelled by {version}")
    with write_transaction(rt.engine) as conn:
        # New predictions: the active-learning order changes with them.
        refresh_order(conn, rt.projects.load(conn, spec.project_id))
    auto_threshold: float | None = None
    auto = 0
    if spec.auto_label_target_accuracy and state.get("version"):
        ctx.report(None, "choosing an auto-labeling threshold")
        with write_transaction(rt.engine) as conn:
            project = rt.projects.load(conn, spec.project_id)
            auto_threshold, auto = autolabel.auto_label(
                conn, project, state["version"], spec.auto_label_target_accuracy, utcnow()
            )
    return {
        "item_result": {
            "items_processed": state["processed"],
            "items_added": state["stored"],
            "queued_for_correction": state["low"],
            "errors": state["errors"],
            "auto_labeled": auto,
            "auto_label_threshold": auto_threshold or 0.0,
        }
    }


# ---- confident learning ----------------------------------------------------------------------


def label_issues(rt: LabelingRuntime, ctx: JobContext, spec: pb.LabelIssuesSpec) -> dict[str, Any]:
    project = rt.projects.get(spec.project_id, with_stats=False)
    classes = [label.name for label in project.spec.labels if label.kind == "class"] or [
        "same",
        "different",
        "unsure",
    ]
    columns = {c: spec.probability_columns.get(c, c) for c in classes}
    data = rt.artifacts.get_bytes(rt.artifacts.key_for_uri(spec.probabilities.uri))
    table = pq.read_table(io.BytesIO(data))
    for column in [spec.key_column, *columns.values()]:
        if column not in table.column_names:
            raise InvalidArgument(
                f"probabilities have no column {column!r} (columns: {table.column_names})",
                reason="MISSING_COLUMN",
            )
    keys = [str(k) for k in table.column(spec.key_column).to_pylist()]
    matrix = np.column_stack(
        [np.asarray(table.column(columns[c]).to_numpy(), dtype=float) for c in classes]
    )
    ctx.report(0.3, f"checking labels against {len(keys)} predictions")
    with write_transaction(rt.engine) as conn:
        checked, flagged = issues.flag_issues(
            conn,
            rt.projects.load(conn, spec.project_id),
            dict(zip(keys, matrix)),
            classes,
            match_entity_id=spec.match_entity_id,
            now=utcnow(),
        )
    return {"item_result": {"items_processed": checked, "queued_for_correction": flagged}}

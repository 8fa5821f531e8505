"""The body of each data job, run in a job subprocess with its own runtime.

Every job reports progress, checks for cancellation between steps, and publishes its output
only at the end (datasets) or in committed steps recorded as checkpoints (ingest), so a
cancelled or failed job never leaves partial results visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atlas.data.v1 import data_service_pb2 as pb
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument, Unavailable
from atlas_core.jobs import JobContext
from atlas_data import derive as ops
from atlas_data.builds import (
    publish_dataset,
    read_dataset,
    read_parquet_artifacts,
)
from atlas_data.datasets import DatasetRecord, LineageParent
from atlas_data.history import batch_from_table
from atlas_data.matching import JoinColumns, JoinResult, point_in_time_join
from atlas_data.runtime import DataRuntime
from atlas_data.spine import spine_from_history

_SPINE_SAMPLING = {
    pb.SPINE_SAMPLING_UNSPECIFIED: "every_record",
    pb.SPINE_SAMPLING_EVERY_RECORD: "every_record",
    pb.SPINE_SAMPLING_LATEST_PER_ENTITY: "latest_per_entity",
    pb.SPINE_SAMPLING_FIXED_INTERVAL: "fixed_interval",
}


def _dataset_parent(record: DatasetRecord, role: str) -> LineageParent:
    return LineageParent(
        role, "dataset", {"dataset_id": record.dataset_id, "version": record.version}
    )


# ---------------------------------------------------------------- ingest


def ingest(rt: DataRuntime, ctx: JobContext, spec: pb.IngestSpec) -> dict[str, Any]:
    group = rt.groups.get(spec.feature_group.name, spec.feature_group.version)
    keys = [rt.artifacts.key_for_uri(a.uri) for a in spec.source.artifacts]
    if spec.source.uri_prefix:
        prefix = rt.artifacts.key_for_uri(spec.source.uri_prefix)
        keys += [ref.key for ref in rt.artifacts.list(prefix) if ref.key.endswith(".parquet")]
    if not keys:
        raise InvalidArgument("ingest source lists no Parquet files", reason="NO_INPUT")
    mapping = dict(spec.source.column_mapping)
    done = ctx.last_checkpoint() or {"file": 0, "row_group": 0, "rows": 0, "written": 0, "stale": 0}
    for file_index in range(done["file"], len(keys)):
        ctx.raise_if_cancelled()
        table_file = _open_parquet(rt, keys[file_index])
        start_group = done["row_group"] if file_index == done["file"] else 0
        for rg in range(start_group, table_file.num_row_groups):
            ctx.raise_if_cancelled()
            table = _read_row_group(table_file, rg, keys[file_index])
            batch = batch_from_table(group.spec, group.layout, table, mapping)
            outcome = rt.ingestor.write_batch(group, batch, online=not spec.skip_online)
            done = {
                "file": file_index,
                "row_group": rg + 1,
                "rows": done["rows"] + len(batch),
                "written": done["written"] + outcome.written,
                "stale": done["stale"] + outcome.stale,
            }
            ctx.checkpoint(done)  # committed: a resumed job continues after this row group
            ctx.report(
                (file_index + (rg + 1) / table_file.num_row_groups) / len(keys),
                f"{keys[file_index]}: row group {rg + 1}/{table_file.num_row_groups}",
                rows=done["rows"],
            )
        done = {**done, "file": file_index + 1, "row_group": 0}
    rt.offline.flush(group.spec.name, group.version, group.spec.event_time_column)
    return {
        "rows_read": done["rows"],
        "records_written": done["written"],
        "records_stale": done["stale"],
        "files_done": len(keys),
    }


def _open_parquet(rt: DataRuntime, key: str) -> pq.ParquetFile:
    import io

    data = rt.artifacts.get_bytes(key)
    try:
        return pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise InvalidArgument(
            f"artifact '{key}' is not a readable Parquet file: {exc}", reason="CORRUPT_PARQUET"
        ) from None


def _read_row_group(table_file: pq.ParquetFile, rg: int, key: str) -> pa.Table:
    """Row group ``rg``; damage inside it (a valid footer over corrupt pages) is refused."""
    try:
        return table_file.read_row_group(rg)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidArgument(
            f"artifact '{key}' row group {rg} is not readable Parquet: {exc}",
            reason="CORRUPT_PARQUET",
        ) from None


# ---------------------------------------------------------------- compaction


def compact(rt: DataRuntime, ctx: JobContext, spec: pb.CompactionSpec) -> dict[str, Any]:
    group = rt.groups.get(spec.feature_group.name, spec.feature_group.version)
    ctx.report(0.1, "flushing staged records")
    rt.offline.flush(group.spec.name, group.version, group.spec.event_time_column)
    ctx.raise_if_cancelled()
    ctx.report(0.3, "rewriting partitions")
    outcome = rt.offline.compact(
        group.spec.name,
        group.version,
        group.spec.event_time_column,
        group.spec.entity_key,
        start_us=pc.opt_ts_us(spec, "start_time"),
        end_us=pc.opt_ts_us(spec, "end_time"),
        target_bytes=spec.target_partition_bytes or 128 * 1024 * 1024,
        deduplicate=spec.deduplicate,
    )
    return {
        "input_partitions": outcome.input_partitions,
        "output_partitions": outcome.output_partitions,
        "rows": outcome.rows,
        "duplicates_dropped": outcome.duplicates_dropped,
    }


# ---------------------------------------------------------------- sample matching


def _load_samples(rt: DataRuntime, source: pb.SampleSource) -> tuple[pa.Table, LineageParent]:
    if source.HasField("dataset"):
        record = rt.datasets.get(source.dataset.dataset_id, source.dataset.version)
        return read_dataset(rt.artifacts, record), _dataset_parent(record, "samples")
    if not source.artifact.uri:
        raise InvalidArgument("sample_source needs an artifact or a dataset", reason="NO_SAMPLES")
    key = rt.artifacts.key_for_uri(source.artifact.uri)
    table = read_parquet_artifacts(rt.artifacts, [key])
    parent = LineageParent(
        "samples", "artifact", {"uri": source.artifact.uri, "sha256": source.artifact.sha256}
    )
    return table, parent


def _spine_free_samples(
    rt: DataRuntime, spine: pb.SpineFreeSource
) -> tuple[pa.Table, str, str, str, LineageParent]:
    """(samples drawn from the base group's history, entity, time and label columns, parent)."""
    base = rt.groups.get(spine.feature_group.name, spine.feature_group.version)
    history = _history(rt, base)
    samples = spine_from_history(
        history,
        entity_column=base.spec.entity_key,
        event_time_column=base.spec.event_time_column,
        start_us=pc.opt_ts_us(spine, "start_time") or 0,
        end_us=pc.opt_ts_us(spine, "end_time") or 2**62,
        sampling=_SPINE_SAMPLING[spine.sampling],  # type: ignore[arg-type]  # a Literal by table
        interval_s=spine.interval.ToTimedelta().total_seconds()
        if spine.HasField("interval")
        else None,
        label_feature=spine.label_feature or None,
        max_samples=spine.max_samples,
        seed=spine.seed,
    )
    label_col = (
        "label"
        if spine.label_feature and "label" in samples.column_names
        else (spine.label_feature if spine.label_feature in samples.column_names else "")
    )
    parent = LineageParent(
        "spine", "feature_group", {"name": base.spec.name, "version": base.version}
    )
    return samples, base.spec.entity_key, base.spec.event_time_column, label_col, parent


def _source_columns(
    source: pb.SampleSource, column_names: list[str]
) -> tuple[str, str, str, list[str]]:
    """(entity, time, label columns, the columns kept) of a sample source; checked."""
    entity_col = source.entity_column or "entity_id"
    time_col = source.timestamp_column or "timestamp"
    label_col = source.label_column
    keep = [entity_col, time_col] + ([label_col] if label_col else [])
    keep += [c for c in source.passthrough_columns if c not in keep]
    missing = [c for c in keep if c not in column_names]
    if missing:
        raise InvalidArgument(
            f"sample set has no column '{missing[0]}' (columns: {', '.join(column_names[:20])})",
            reason="UNKNOWN_COLUMN",
            metadata={"column": missing[0]},
        )
    return entity_col, time_col, label_col, keep


def match_samples(rt: DataRuntime, ctx: JobContext, spec: pb.MatchSamplesSpec) -> dict[str, Any]:
    if not spec.features:
        raise InvalidArgument("features: select at least one feature group", reason="NO_FEATURES")
    groups = [
        rt.groups.get(sel.feature_group.name, sel.feature_group.version) for sel in spec.features
    ]
    budget = rt.settings.matching.memory_budget_bytes
    if budget and not rt.settings.dask.scheduler_address:
        from atlas_data.match_job_outofcore import match_samples_out_of_core

        return match_samples_out_of_core(rt, ctx, spec, groups, budget)
    parents: list[LineageParent] = []
    ctx.report(0.05, "loading samples")
    if spec.HasField("spine_free"):
        samples, entity_col, time_col, label_col, parent = _spine_free_samples(rt, spec.spine_free)
        parents.append(parent)
    else:
        source = spec.sample_source
        samples, parent = _load_samples(rt, source)
        parents.append(parent)
        entity_col, time_col, label_col, keep = _source_columns(source, samples.column_names)
        samples = samples.select(keep)
    unmatched = 0
    matched_any = None
    with _join_engine(rt, ctx) as join:
        for i, (sel, group) in enumerate(zip(spec.features, groups, strict=True)):
            ctx.raise_if_cancelled()
            name = f"{group.spec.name} v{group.version}"
            ctx.report(0.1 + 0.7 * i / len(groups), f"joining {name}")
            history = _history(rt, group)

            def progress(done: int, total: int, i: int = i, name: str = name) -> None:
                ctx.report(
                    0.1 + 0.7 * (i + done / total) / len(groups),
                    f"joining {name}: {done}/{total} shards done on Dask",
                )

            result = join(
                samples,
                history,
                join_columns(spec, sel, group, entity_col, time_col),
                label=f"feature group {name}",
                progress=progress,
            )
            samples = result.table
            matched_any = result.matched if matched_any is None else (matched_any | result.matched)
            unmatched = max(unmatched, result.unmatched_count)
            parents.append(
                LineageParent(
                    "features", "feature_group", {"name": group.spec.name, "version": group.version}
                )
            )
    if spec.drop_unmatched and matched_any is not None:
        samples = samples.filter(pa.array(matched_any))
    ctx.raise_if_cancelled()
    ctx.report(0.85, "publishing dataset")
    name = spec.output_dataset_name or f"matched-{ctx.job_id[:8]}"
    record = publish_dataset(
        rt.artifacts,
        rt.datasets,
        samples,
        name=name,
        parents=parents,
        operation="match_samples",
        job_id=ctx.job_id,
        entity_column=entity_col,
        timestamp_column=time_col,
        label_column=label_col,
        skip_meta_features=spec.skip_meta_features,
        description=spec.description,
    )
    return {
        "datasets": [[record.dataset_id, record.version]],
        "unmatched_samples": unmatched,
        "warnings": [],
    }


def join_columns(
    spec: pb.MatchSamplesSpec,
    sel: Any,
    group: Any,
    entity_column: str,
    timestamp_column: str,
) -> JoinColumns:
    """The join of one selected feature group (``sel``, one of ``spec.features``): the
    selection's TTL overrides the group's."""
    ttl = sel.ttl.ToTimedelta().total_seconds() if sel.HasField("ttl") else group.spec.ttl_seconds
    return JoinColumns(
        entity_column=entity_column,
        timestamp_column=timestamp_column,
        history_entity_column=group.spec.entity_key,
        event_time_column=group.spec.event_time_column,
        features=list(sel.feature_names),
        ttl_seconds=ttl,
        as_known_at=spec.mode == pb.MATCH_MODE_AS_KNOWN_AT,
        column_prefix=sel.column_prefix,
    )


Join = Callable[..., JoinResult]


@contextmanager
def _join_engine(rt: DataRuntime, ctx: JobContext) -> Iterator[Join]:
    """The point-in-time join the job uses: in this process, or sharded over the Dask
    cluster of ``dask.scheduler_address`` (one client for the whole job)."""
    settings = rt.settings.dask
    if not settings.scheduler_address:

        def local(
            samples: pa.Table, history: pa.Table, columns: JoinColumns, **_: Any
        ) -> JoinResult:
            return point_in_time_join(samples, history=history, **columns.kwargs())

        yield local
        return
    from distributed import Client

    from atlas_data.matching_dask import dask_point_in_time_join

    ctx.report(0.07, f"connecting to the Dask scheduler at {settings.scheduler_address}")
    try:
        client = Client(
            settings.scheduler_address,
            timeout=settings.connect_timeout_seconds,
            set_as_default=False,
        )
    except (OSError, TimeoutError) as exc:
        raise Unavailable(
            f"the Dask scheduler at {settings.scheduler_address} is unreachable: {exc}",
            reason="DASK_UNAVAILABLE",
            metadata={"address": settings.scheduler_address},
        ) from exc
    try:
        shards = settings.shards or max(1, 2 * len(client.scheduler_info()["workers"]))

        def on_dask(
            samples: pa.Table,
            history: pa.Table,
            columns: JoinColumns,
            *,
            label: str,
            progress: Callable[[int, int], None],
        ) -> JoinResult:
            return dask_point_in_time_join(
                client,
                samples,
                history=history,
                columns=columns,
                shards=shards,
                label=label,
                on_progress=progress,
                should_stop=ctx.raise_if_cancelled,
            )

        yield on_dask
    finally:
        client.close()


def _history(rt: DataRuntime, group: Any) -> pa.Table:
    history = rt.offline.read_history(group.spec.name, group.version, group.spec.event_time_column)
    if history is None:
        from atlas_data.history import history_schema

        history = history_schema(group.spec).empty_table()
    return history


# ---------------------------------------------------------------- derivation


def derive(rt: DataRuntime, ctx: JobContext, spec: pb.DeriveDatasetSpec) -> dict[str, Any]:
    op = spec.WhichOneof("operation")
    if op is None:
        raise InvalidArgument(
            "derive spec needs an operation (merge, sample, filter, split, project)",
            reason="NO_OPERATION",
        )
    message = getattr(spec, op)
    input_refs = list(message.inputs) if op == "merge" else [message.input]
    if not input_refs:
        raise InvalidArgument(f"{op}: no input datasets", reason="NO_INPUT")
    inputs = [rt.datasets.get(r.dataset_id, r.version) for r in input_refs]
    ctx.report(0.1, f"reading {len(inputs)} dataset(s)")
    tables = [read_dataset(rt.artifacts, rec) for rec in inputs]
    ctx.raise_if_cancelled()
    first = inputs[0]
    outputs: dict[str, pa.Table]
    if op == "merge":
        outputs = {"": ops.merge(tables, deduplicate=message.deduplicate)}
    elif op == "sample":
        size = message.WhichOneof("size")
        outputs = {
            "": ops.sample(
                tables[0],
                fraction=message.fraction if size == "fraction" else None,
                rows=message.rows if size == "rows" else None,
                method="stratified" if message.method == pb.SAMPLE_METHOD_STRATIFIED else "random",
                stratify_column=message.stratify_column or first.label_column or None,
                seed=message.seed,
            )
        }
    elif op == "filter":
        outputs = {"": ops.filter_rows(tables[0], message.expression)}
    elif op == "split":
        outputs = ops.split(
            tables[0],
            train=message.train_fraction,
            valid=message.valid_fraction,
            test=message.test_fraction,
            stratify_column=message.stratify_column or None,
            group_column=message.group_column or None,
            time_column=message.time_column or None,
            seed=message.seed,
        )
    else:
        outputs = {
            "": ops.project(
                tables[0],
                columns=list(message.columns) or None,
                drop=list(message.drop_columns) or None,
            )
        }
    base_name = spec.output_dataset_name or f"{first.name}-{op}"
    parents = [_dataset_parent(rec, "input") for rec in inputs]
    published = []
    for i, (part, table) in enumerate(outputs.items()):
        ctx.raise_if_cancelled()
        ctx.report(0.5 + 0.5 * i / len(outputs), f"publishing {part or base_name}")
        label = first.label_column if first.label_column in table.column_names else ""
        record = publish_dataset(
            rt.artifacts,
            rt.datasets,
            table,
            name=f"{base_name}-{part}" if part else base_name,
            parents=parents,
            operation=op if not part else f"split:{part}",
            job_id=ctx.job_id,
            entity_column=first.entity_column if first.entity_column in table.column_names else "",
            timestamp_column=first.timestamp_column
            if first.timestamp_column in table.column_names
            else "",
            label_column=label,
            skip_meta_features=spec.skip_meta_features,
            description=spec.description,
        )
        published.append([record.dataset_id, record.version])
    return {"datasets": published, "unmatched_samples": 0, "warnings": []}

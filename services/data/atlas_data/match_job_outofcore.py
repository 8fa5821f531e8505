"""``SubmitMatchSamplesJob`` out of core: the job body when ``matching.memory_budget_bytes``
is set (and no Dask scheduler is).

The samples are put on local disk as they are (a sample artifact or dataset is downloaded,
not loaded); each feature group's join then streams them and a local copy of the group's
history (the join reads it twice) through
:func:`atlas_data.matching_outofcore.out_of_core_join`, whose output (an Arrow IPC file, in
sample order) is the next group's samples. The last output is published from the file: the
dataset becomes visible only when its catalog entry is registered, after every group has
joined, and the spill directory is removed whatever happens, so a job that fails or is
cancelled midway publishes nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobContext
from atlas_data.builds import publish_dataset_file
from atlas_data.datasets import LineageParent
from atlas_data.history import history_schema
from atlas_data.job_work import (
    _dataset_parent,
    _source_columns,
    _spine_free_samples,
    join_columns,
)
from atlas_data.matching_outofcore import ArrowFiles, out_of_core_join, row_bytes
from atlas_data.runtime import DataRuntime


def match_samples_out_of_core(
    rt: DataRuntime, ctx: JobContext, spec: pb.MatchSamplesSpec, groups: list[Any], budget: int
) -> dict[str, Any]:
    spill_root = rt.settings.matching.spill_dir or None
    if spill_root:
        Path(spill_root).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"atlas-match-{ctx.job_id[:8]}-", dir=spill_root))
    try:
        ctx.report(0.05, "loading samples")
        samples, entity_col, time_col, label_col, parent = _local_samples(rt, spec, work)
        parents = [parent]
        matched_any: np.ndarray | None = None
        unmatched = 0
        for i, (sel, group) in enumerate(zip(spec.features, groups, strict=True)):
            ctx.raise_if_cancelled()
            name = f"{group.spec.name} v{group.version}"
            ctx.report(0.1 + 0.7 * i / len(groups), f"joining {name} out of core")
            schema = history_schema(group.spec)
            last = i == len(groups) - 1
            step = work / f"group-{i}"
            step.mkdir()

            def progress(done: int, total: int, i: int = i, name: str = name) -> None:
                ctx.report(
                    0.1 + 0.7 * (i + done / total) / len(groups),
                    f"joining {name} out of core: {done}/{total} buckets done",
                )

            history = ArrowFiles(
                tuple(rt.offline.history_files(group.spec.name, group.version, step / "history"))
            )
            result = out_of_core_join(
                samples,
                history=partial(history.batches, rows=max(1024, budget // (8 * row_bytes(schema)))),
                history_schema=schema,
                history_rows=history.num_rows(),
                columns=join_columns(spec, sel, group, entity_col, time_col),
                budget_bytes=budget,
                workdir=step,
                output=work / f"joined-{i}.arrow",
                # Rows unmatched in every group are dropped while the last output is written.
                drop_unless=(
                    (np.zeros(samples.num_rows(), bool) if matched_any is None else matched_any)
                    if last and spec.drop_unmatched
                    else None
                ),
                label=f"feature group {name}",
                on_progress=progress,
                should_stop=ctx.raise_if_cancelled,
            )
            shutil.rmtree(step)
            if samples.paths[0].parent == work:
                samples.paths[0].unlink()  # the previous group's output, joined: done with
            samples = ArrowFiles((result.path,))
            matched_any = result.matched if matched_any is None else matched_any | result.matched
            unmatched = max(unmatched, int(len(result.matched) - result.matched.sum()))
            parents.append(
                LineageParent(
                    "features", "feature_group", {"name": group.spec.name, "version": group.version}
                )
            )
        ctx.raise_if_cancelled()
        ctx.report(0.85, "publishing dataset")
        record = publish_dataset_file(
            rt.artifacts,
            rt.datasets,
            samples.paths[0],
            name=spec.output_dataset_name or f"matched-{ctx.job_id[:8]}",
            parents=parents,
            operation="match_samples",
            job_id=ctx.job_id,
            entity_column=entity_col,
            timestamp_column=time_col,
            label_column=label_col,
            skip_meta_features=spec.skip_meta_features,
            description=spec.description,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "datasets": [[record.dataset_id, record.version]],
        "unmatched_samples": unmatched,
        "warnings": [],
    }


def _local_samples(
    rt: DataRuntime, spec: pb.MatchSamplesSpec, work: Path
) -> tuple[ArrowFiles, str, str, str, LineageParent]:
    """The job's samples as files under ``work`` (kept columns only for a sample source)."""
    if spec.HasField("spine_free"):
        # Drawing a spine reads the base group's history in memory, as the in-memory job does.
        table, entity_col, time_col, label_col, parent = _spine_free_samples(rt, spec.spine_free)
        path = work / "spine.arrow"
        with ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table)
        return ArrowFiles((path,)), entity_col, time_col, label_col, parent
    source = spec.sample_source
    if source.HasField("dataset"):
        record = rt.datasets.get(source.dataset.dataset_id, source.dataset.version)
        refs: list[Any] = list(record.artifact_refs())
        parent = _dataset_parent(record, "samples")
    elif source.artifact.uri:
        refs = [rt.artifacts.key_for_uri(source.artifact.uri)]
        parent = LineageParent(
            "samples", "artifact", {"uri": source.artifact.uri, "sha256": source.artifact.sha256}
        )
    else:
        raise InvalidArgument("sample_source needs an artifact or a dataset", reason="NO_SAMPLES")
    paths = []
    for i, ref in enumerate(refs):
        path = work / f"samples-{i}.parquet"
        rt.artifacts.download_to_file(ref, path)
        paths.append(path)
    files = ArrowFiles(tuple(paths))
    try:
        names = files.schema().names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(
            f"the samples are not a readable Parquet file: {exc}", reason="CORRUPT_PARQUET"
        ) from None
    entity_col, time_col, label_col, keep = _source_columns(source, names)
    # Only the kept columns go on, in this order (as the in-memory job's select).
    path = work / "samples.arrow"
    schema = files.schema()
    with ipc.new_file(str(path), pa.schema([schema.field(c) for c in keep])) as writer:
        for batch in files.batches(keep, 65_536):
            writer.write_batch(batch.select(keep))
    for p in paths:
        p.unlink()
    return ArrowFiles((path,)), entity_col, time_col, label_col, parent

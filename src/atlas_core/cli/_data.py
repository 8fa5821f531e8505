"""`atlas data ...`: feature groups, online reads, datasets and data jobs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf import json_format

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.cli._connect import add_connection_args, client_settings
from atlas_core.cli._files import dataset_name, publish, read_table
from atlas_core.cli._groupspec import parse_group_spec
from atlas_core.cli._output import dump, show, structured
from atlas_core.clients import DataClient
from atlas_core.clients.data import Features
from atlas_core.errors import InvalidArgument


def _client(args: argparse.Namespace) -> DataClient:
    return DataClient(client_settings(args, "data"))


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def _load(path: str, message_type: type) -> object:
    return json_format.Parse(_read(path), message_type())


def cmd_groups(args: argparse.Namespace) -> int:
    with _client(args) as client:
        groups = client.list_feature_groups(args.prefix)
    if structured(args, groups):
        return 0
    for g in groups:
        print(
            f"{g.spec.name:<24} v{g.version:<3} {len(g.spec.features):>5} features  "
            f"float32 width {g.layout.float32_width}"
        )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    with _client(args) as client:
        show(args, client.get_feature_group(args.name, args.version))
    return 0


def cmd_create_group(args: argparse.Namespace) -> int:
    spec = parse_group_spec(_read(args.file))
    with _client(args) as client:
        group = client.create_feature_group(spec, new_version=args.new_version)
    print(f"created {group.spec.name} v{group.version}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    keys: list[int] | list[str]
    try:
        keys = [int(k) for k in args.keys]
    except ValueError:
        keys = list(args.keys)
    features = [f for f in (args.features or "").split(",") if f]
    with _client(args) as client:
        got = client.get_features(args.group, keys, features)
    rows = [
        {
            "key": key,
            "found": bool(got.found[i]),
            "event_time_us": int(got.event_time_us[i]),
            "features": (
                {slot.name: _value(got, slot, i) for slot in got.layout.slots}
                if got.found[i]
                else {}
            ),
        }
        for i, key in enumerate(keys)
    ]
    if (args.output or "table") == "table":
        for row in rows:
            print(json.dumps(row)[:2000])
    else:
        print(dump(rows, args.output))
    return 0


def _value(got: Features, slot: pb.FeatureSlot, i: int) -> object:
    """One stored feature value of entity ``i``, whatever block it lives in."""
    end = slot.offset + max(slot.dims, 1)
    if slot.block == pb.VALUE_BLOCK_STRING:
        width = got.layout.string_width
        values: list = got.strings[i * width + slot.offset : i * width + end]
    else:
        block = {
            pb.VALUE_BLOCK_FLOAT32: got.float32,
            pb.VALUE_BLOCK_FLOAT64: got.float64,
            pb.VALUE_BLOCK_INT64: got.int64,
        }[slot.block]
        values = block[i, slot.offset : end].tolist()
        values = [None if isinstance(v, float) and v != v else v for v in values]  # NaN: missing
    return values if slot.dims > 1 else values[0]


def upload(args: argparse.Namespace, client: DataClient, path: Path, target: str) -> pb.Dataset:
    """Publish a local CSV / Parquet / JSONL file and register it as a dataset version."""
    table = read_table(path)
    if target and target not in table.column_names:
        raise InvalidArgument(
            f"--target {target!r} is not a column of {path.name} "
            f"(columns: {', '.join(table.column_names[:20])})"
        )
    name = getattr(args, "name", None) or dataset_name(path)
    ref = publish(args, table, name)
    return client.register_dataset(
        name,
        [ref],
        label_column=target,
        entity_column=getattr(args, "entity", None) or "",
        timestamp_column=getattr(args, "timestamp", None) or "",
        request_id=f"upload-{name}-{ref.sha256}",
    )


def dataset_line(d: pb.Dataset) -> str:
    m = d.meta_features
    return (
        f"dataset {d.ref.dataset_id}@{d.ref.version}: {d.row_count} rows, {m.columns} columns "
        f"({m.numeric_columns} numeric, {m.categorical_columns} categorical), "
        f"{m.missing_ratio:.1%} missing"
        + (f", label {d.label_column}" if d.label_column else "")
        + (f" ({m.classes} classes)" if d.label_column and m.classes else "")
    )


def cmd_upload(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(dataset_line(upload(args, client, Path(args.file), args.target or "")))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    with _client(args) as client:
        datasets = client.list_datasets(args.prefix)
    if structured(args, datasets):
        return 0
    for d in datasets:
        print(
            f"{d.ref.dataset_id:<32} v{d.ref.version:<3} {d.row_count:>9} rows  "
            f"{d.lineage.operation}"
        )
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    with _client(args) as client:
        show(args, client.get_dataset(args.dataset_id, args.version))
    return 0


_SUBMITTERS = {
    "match": (pb.MatchSamplesSpec, "submit_match_samples"),
    "derive": (pb.DeriveDatasetSpec, "submit_derive"),
    "ingest": (pb.IngestSpec, "submit_ingest"),
}


def cmd_submit(args: argparse.Namespace) -> int:
    spec_type, method = _SUBMITTERS[args.data_command]
    spec = _ingest_spec(args) if getattr(args, "group", None) else _load(args.file, spec_type)
    with _client(args) as client:
        job = getattr(client, method)(spec)
        print(f"submitted job {job.status.job_id}")
        if args.wait:
            return _follow(client, job.status.job_id)
    return 0


def _ingest_spec(args: argparse.Namespace) -> pb.IngestSpec:
    """`data ingest FILE --group g`: the file's rows become the group's records."""
    path = Path(args.file)
    ref = publish(args, read_table(path), f"ingest-{args.group}")
    return pb.IngestSpec(
        feature_group=common_pb2.FeatureGroupRef(name=args.group),
        source=pb.ParquetSource(artifacts=[ref]),
    )


def _follow(client: DataClient, job_id: str) -> int:
    job = None
    for job in client.watch_job(job_id):
        state = common_pb2.JobState.Name(job.status.state).removeprefix("JOB_STATE_")
        print(f"{state:<10} {job.status.progress.fraction:6.1%}  {job.status.progress.message}")
    if job is not None and job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(f"error: {job.status.error.code}: {job.status.error.message}", file=sys.stderr)
        return 1
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.watch:
            return _follow(client, args.job_id)
        show(args, client.get_job(args.job_id))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel_job(args.job_id)
    print(common_pb2.JobState.Name(job.status.state))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="feature groups, online features, datasets, data jobs")
    cmds = data.add_subparsers(dest="data_command", metavar="<data command>", required=True)

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text, description=help_text)
        add_connection_args(p)
        p.set_defaults(func=fn)
        return p

    add("groups", cmd_groups, "list feature groups").add_argument("--prefix", default="")
    p = add("describe", cmd_describe, "show a feature group (schema, layout, stats)")
    p.add_argument("name")
    p.add_argument("--version", type=int, default=0)
    p = add(
        "upload",
        cmd_upload,
        "register a local .csv, .parquet or .jsonl file as a dataset version "
        "(schema and meta-features computed)",
    )
    p.add_argument("file")
    p.add_argument("--name", help="dataset name (default: from the file name)")
    p.add_argument("--target", help="the label column")
    p.add_argument("--entity", help="the entity id column, if any")
    p.add_argument("--timestamp", help="the event-time column, if any")
    p = add(
        "create-group",
        cmd_create_group,
        "create a feature group from a YAML or JSON spec (file or - for stdin); "
        "types: float, int, string, category, bool, float64, vector[N]",
    )
    p.add_argument("file")
    p.add_argument("--new-version", action="store_true")
    p = add("get", cmd_get, "read the latest features of entities")
    p.add_argument("group")
    p.add_argument("keys", nargs="+")
    p.add_argument("--features", help="comma-separated subset (default: all)")
    add("datasets", cmd_datasets, "list datasets (latest versions)").add_argument(
        "--prefix", default=""
    )
    p = add("dataset", cmd_dataset, "show a dataset version")
    p.add_argument("dataset_id")
    p.add_argument("--version", type=int, default=0)
    for name, what in (
        ("match", "submit a match job from a JSON MatchSamplesSpec (file or -)"),
        ("derive", "submit a derive job from a JSON DeriveDatasetSpec (file or -)"),
        ("ingest", "ingest a .csv/.parquet/.jsonl FILE into --group (or a JSON IngestSpec)"),
    ):
        p = add(name, cmd_submit, what)
        p.add_argument("file")
        p.add_argument("--wait", action="store_true", help="follow the job until it ends")
        if name == "ingest":
            p.add_argument("--group", help="feature group FILE's rows go to")
    p = add("job", cmd_job, "show (or --watch) a data job")
    p.add_argument("job_id")
    p.add_argument("--watch", action="store_true")
    p = add("cancel", cmd_cancel, "cancel a data job")
    p.add_argument("job_id")

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
from atlas_core.clients import DataClient


def _client(args: argparse.Namespace) -> DataClient:
    return DataClient(client_settings(args, "data"))


def _print(message: object) -> None:
    print(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))


def _load(path: str, message_type: type) -> object:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return json_format.Parse(text, message_type())


def cmd_groups(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for g in client.list_feature_groups(args.prefix):
            print(
                f"{g.spec.name:<24} v{g.version:<3} {len(g.spec.features):>5} features  "
                f"float32 width {g.layout.float32_width}"
            )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.get_feature_group(args.name, args.version))
    return 0


def cmd_create_group(args: argparse.Namespace) -> int:
    spec = _load(args.file, pb.FeatureGroupSpec)
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
    for i, key in enumerate(keys):
        row = {
            s.name: got.float32[i, s.offset : s.offset + s.dims].tolist()
            for s in got.layout.slots
            if s.block == pb.VALUE_BLOCK_FLOAT32
        }
        print(
            json.dumps(
                {
                    "key": key,
                    "found": bool(got.found[i]),
                    "event_time_us": int(got.event_time_us[i]),
                    "float32": row,
                }
            )[:2000]
        )
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for d in client.list_datasets(args.prefix):
            print(
                f"{d.ref.dataset_id:<32} v{d.ref.version:<3} {d.row_count:>9} rows  "
                f"{d.lineage.operation}"
            )
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.get_dataset(args.dataset_id, args.version))
    return 0


_SUBMITTERS = {
    "match": (pb.MatchSamplesSpec, "submit_match_samples"),
    "derive": (pb.DeriveDatasetSpec, "submit_derive"),
    "ingest": (pb.IngestSpec, "submit_ingest"),
}


def cmd_submit(args: argparse.Namespace) -> int:
    spec_type, method = _SUBMITTERS[args.data_command]
    spec = _load(args.file, spec_type)
    with _client(args) as client:
        job = getattr(client, method)(spec)
        print(f"submitted job {job.status.job_id}")
        if args.wait:
            return _follow(client, job.status.job_id)
    return 0


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
        _print(client.get_job(args.job_id))
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
        "create-group",
        cmd_create_group,
        "create a feature group from a JSON FeatureGroupSpec (file or - for stdin)",
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
        ("match", "MatchSamplesSpec"),
        ("derive", "DeriveDatasetSpec"),
        ("ingest", "IngestSpec"),
    ):
        p = add(name, cmd_submit, f"submit a {name} job from a JSON {what} (file or -)")
        p.add_argument("file")
        p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p = add("job", cmd_job, "show (or --watch) a data job")
    p.add_argument("job_id")
    p.add_argument("--watch", action="store_true")
    p = add("cancel", cmd_cancel, "cancel a data job")
    p.add_argument("job_id")

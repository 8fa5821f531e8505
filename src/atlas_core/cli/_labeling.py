"""`atlas label ...`: labeling projects, items, assignments, annotation and review."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf import json_format

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.cli._connect import add_connection_args, client_settings
from atlas_core.clients.labeling import LabelingClient

_TASKS = {
    name.removeprefix("TASK_TYPE_").lower(): value
    for name, value in pb.TaskType.items()
    if value != pb.TASK_TYPE_UNSPECIFIED
}
_DECISIONS = {
    "accept": pb.REVIEW_DECISION_ACCEPT,
    "reject": pb.REVIEW_DECISION_REJECT,
    "correct": pb.REVIEW_DECISION_CORRECT,
}


def _client(args: argparse.Namespace) -> LabelingClient:
    return LabelingClient(client_settings(args, "labeling"))


def _print(message: object) -> None:
    print(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))  # type: ignore[arg-type]


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def _value(args: argparse.Namespace) -> pb.AnnotationValue:
    """--label a[,b] for classes, --face-pair, or --value with AnnotationValue JSON."""
    if args.value:
        return json_format.Parse(args.value, pb.AnnotationValue())
    if args.face_pair:
        return pb.AnnotationValue(
            face_pair=pb.FacePairDecision.Value(f"FACE_PAIR_DECISION_{args.face_pair.upper()}")
        )
    return pb.AnnotationValue(classes=pb.ClassLabels(labels=args.label.split(",")))


def cmd_projects(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for p in client.list_projects(include_archived=args.all):
            task = pb.TaskType.Name(p.spec.task_type).removeprefix("TASK_TYPE_").lower()
            s = p.stats
            print(
                f"{p.project_id:<28} {p.spec.name:<24} {task:<22} {s.items:>7} items "
                f"{s.items_done:>7} done{'  (archived)' if p.archived else ''}"
            )
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    if args.file:
        spec = json_format.Parse(_read(args.file), pb.ProjectSpec())
    else:
        kind = "entity" if args.task == "text_spans" else "class"
        spec = pb.ProjectSpec(
            name=args.name,
            task_type=_TASKS[args.task],
            labels=[pb.LabelDefinition(name=n, kind=kind) for n in args.labels.split(",") if n],
            overlap=args.overlap,
            multi_label=args.multi_label,
            review_fraction=args.review_fraction,
        )
        spec.assignment_ttl.FromSeconds(int(args.lease_minutes * 60))
    with _client(args) as client:
        project = client.create_project(spec, request_id=args.request_id)
    print(f"created project {project.project_id} ({project.spec.name})")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.get_project(args.project_id))
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.archive_project(args.project_id)
    print(f"archived {args.project_id}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """JSONL lines: NewItem JSON, or {"text": ...} for a plain text item."""
    items = []
    for line in _read(args.file).splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        if set(raw) <= {"text", "entity_id", "external_id"}:
            items.append(
                pb.NewItem(
                    content=pb.ItemContent(text=raw["text"]),
                    entity_id=raw.get("entity_id", ""),
                    external_id=raw.get("external_id", ""),
                )
            )
        else:
            items.append(json_format.ParseDict(raw, pb.NewItem()))
    added = skipped = 0
    with _client(args) as client:
        for start in range(0, len(items), 1000):
            resp = client.add_items(args.project_id, items[start : start + 1000])
            added += sum(1 for i in resp.item_ids if i)
            skipped += resp.skipped
            print(f"added {added} / {len(items)} items ({skipped} duplicates skipped)")
    return 0


def cmd_items(args: argparse.Namespace) -> int:
    statuses = [pb.ItemStatus.Value(f"ITEM_STATUS_{s.upper()}") for s in args.status]
    with _client(args) as client:
        for item in client.iter_items(args.project_id, statuses, omit_annotations=True):
            status = pb.ItemStatus.Name(item.status).removeprefix("ITEM_STATUS_").lower()
            content = item.content.text[:50] if item.content.text else item.content.image.uri
            print(f"{item.item_id:<28} {status:<12} {content}")
    return 0


def cmd_item(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.get_item(args.project_id, args.item_id))
    return 0


def cmd_next(args: argparse.Namespace) -> int:
    with _client(args) as client:
        leased = client.request_assignments(
            args.project_id, args.count, annotator=args.annotator, review=args.review
        )
    for a in leased:
        content = a.item.content.text or a.item.content.image.uri
        print(
            f"{a.assignment_id}  item {a.item.item_id}  until "
            f"{a.expire_time.ToDatetime():%H:%M:%S}Z  {content[:60]}"
        )
    if not leased:
        print("nothing to label right now")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.skip:
            resp = client.skip(args.assignment_id, annotator=args.annotator)
        else:
            resp = client.submit_annotation(
                args.assignment_id,
                _value(args),
                annotator=args.annotator,
                confidence=args.confidence,
                request_id=args.request_id,
            )
    status = pb.ItemStatus.Name(resp.item_status).removeprefix("ITEM_STATUS_").lower()
    done = f"annotation {resp.annotation.annotation_id}" if not args.skip else "skipped"
    print(f"{done}; item is now {status}")
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    with _client(args) as client:
        a = client.renew_lease(args.assignment_id, annotator=args.annotator)
    print(f"lease of {a.assignment_id} runs until {a.expire_time.ToDatetime():%H:%M:%S}Z")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    correction = _value(args) if args.decision == "correct" else None
    with _client(args) as client:
        resp = client.submit_review(
            args.annotation_id,
            _DECISIONS[args.decision],
            correction=correction,
            comment=args.comment,
            reviewer=args.reviewer,
        )
    status = pb.ItemStatus.Name(resp.item_status).removeprefix("ITEM_STATUS_").lower()
    print(f"{args.decision}ed {args.annotation_id}; item is now {status}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for s in client.annotator_stats(args.project_id):
            print(
                f"{s.annotator:<24} {s.annotations:>6} labels {s.skipped:>5} skips  gold "
                f"{s.gold_correct}/{s.gold_answered} ({s.gold_accuracy:.0%})  "
                f"median {s.median_duration_ms} ms"
            )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    label = sub.add_parser("label", help="labeling projects, items, assignments and review")
    cmds = label.add_subparsers(dest="label_command", metavar="<label command>", required=True)

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = cmds.add_parser(name, help=help_text, description=help_text)
        add_connection_args(p)
        p.set_defaults(func=fn)
        return p

    def value_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--label", default="", help="class label(s), comma-separated")
        p.add_argument("--face-pair", choices=["same", "different", "unsure"])
        p.add_argument("--value", default="", help="an AnnotationValue as JSON")

    add("projects", cmd_projects, "list projects").add_argument(
        "--all", action="store_true", help="include archived projects"
    )
    p = add("create", cmd_create, "create a project (flags, or a ProjectSpec JSON --file)")
    p.add_argument("--name", default="")
    p.add_argument("--task", choices=sorted(_TASKS), default="text_classification")
    p.add_argument("--labels", default="", help="comma-separated label names")
    p.add_argument("--overlap", type=int, default=1, help="annotators per item")
    p.add_argument("--multi-label", action="store_true")
    p.add_argument("--review-fraction", type=float, default=0.0)
    p.add_argument("--lease-minutes", type=float, default=60.0)
    p.add_argument("--file", default="", help="ProjectSpec JSON (file or -)")
    p.add_argument("--request-id", default="")
    add("describe", cmd_describe, "show a project with its counters").add_argument("project_id")
    add("archive", cmd_archive, "archive a project").add_argument("project_id")
    p = add("add", cmd_add, 'add items from JSONL (NewItem JSON or {"text": ...} per line)')
    p.add_argument("project_id")
    p.add_argument("file", help="JSONL file or -")
    p = add("items", cmd_items, "list a project's items")
    p.add_argument("project_id")
    p.add_argument(
        "--status",
        action="append",
        default=[],
        help="unlabeled, in_progress, annotated, in_review, done, ...",
    )
    p = add("item", cmd_item, "show an item with its annotations")
    p.add_argument("project_id")
    p.add_argument("item_id")
    p = add("next", cmd_next, "lease items to label (or --review)")
    p.add_argument("project_id")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--annotator", default="", help="default: the token's identity")
    p.add_argument("--review", action="store_true")
    p = add("submit", cmd_submit, "submit an annotation for an assignment (or --skip)")
    p.add_argument("assignment_id")
    value_args(p)
    p.add_argument("--skip", action="store_true")
    p.add_argument("--confidence", type=float, default=0.0)
    p.add_argument("--annotator", default="")
    p.add_argument("--request-id", default="")
    p = add("renew", cmd_renew, "renew an assignment's lease (heartbeat)")
    p.add_argument("assignment_id")
    p.add_argument("--annotator", default="")
    p = add("review", cmd_review, "accept, reject or correct an annotation")
    p.add_argument("annotation_id")
    p.add_argument("decision", choices=sorted(_DECISIONS))
    value_args(p)
    p.add_argument("--comment", default="")
    p.add_argument("--reviewer", default="")
    add("stats", cmd_stats, "per-annotator counters and gold accuracy").add_argument("project_id")

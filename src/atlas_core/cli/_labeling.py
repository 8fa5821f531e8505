"""`atlas label ...`: labeling projects, items, assignments, annotation and review."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.cli._connect import add_connection_args, client_settings
from atlas_core.cli._output import show, structured
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


def _print(args: argparse.Namespace, message: Message) -> None:
    show(args, message, default="json")


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
        projects = list(client.list_projects(include_archived=args.all))
        if structured(args, projects):
            return 0
        for p in projects:
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
        _print(args, client.get_project(args.project_id))
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
        items = list(client.iter_items(args.project_id, statuses, omit_annotations=True))
        if structured(args, items):
            return 0
        for item in items:
            status = pb.ItemStatus.Name(item.status).removeprefix("ITEM_STATUS_").lower()
            content = item.content.text[:50] if item.content.text else item.content.image.uri
            print(f"{item.item_id:<28} {status:<12} {content}")
    return 0


def cmd_item(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(args, client.get_item(args.project_id, args.item_id))
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
        stats = list(client.annotator_stats(args.project_id))
        if structured(args, stats):
            return 0
        for s in stats:
            print(
                f"{s.annotator:<24} {s.annotations:>6} labels {s.skipped:>5} skips  gold "
                f"{s.gold_correct}/{s.gold_answered} ({s.gold_accuracy:.0%})  "
                f"median {s.median_duration_ms} ms"
            )
    return 0


def _follow(client: LabelingClient, submitted: pb.LabelingJob, wait: bool) -> int:
    print(f"submitted job {submitted.status.job_id}")
    if not wait:
        return 0
    job = submitted
    for job in client.watch(submitted.status.job_id):
        state = common_pb2.JobState.Name(job.status.state).removeprefix("JOB_STATE_")
        print(f"{state:<10} {job.status.progress.fraction:6.1%}  {job.status.progress.message}")
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(f"error: {job.status.error.code}: {job.status.error.message}", file=sys.stderr)
        return 1
    if job.WhichOneof("result") == "export_result":
        e = job.export_result
        print(f"export {e.export_id}: {e.rows} rows in {len(e.parts)} part(s), cursor {e.cursor}")
        for part in e.parts:
            print(f"  {part.uri}")
        if e.dataset.dataset_id:
            print(f"  registered as dataset {e.dataset.dataset_id} v{e.dataset.version}")
    else:
        r = job.item_result
        print(
            f"processed {r.items_processed}, added {r.items_added}, skipped {r.items_skipped}, "
            f"queued for correction {r.queued_for_correction}, errors {r.errors}"
            + (
                f", auto-labelled {r.auto_labeled} at score >= {r.auto_label_threshold:.3f}"
                if r.auto_labeled
                else ""
            )
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if args.endpoint:
        spec = pb.ImportSpec(
            project_id=args.project_id,
            bad_cases=pb.BadCaseImport(
                endpoint_name=args.endpoint,
                content_column=args.content_column,
                max_confidence=args.max_confidence,
                max_items=args.max_items,
            ),
        )
    else:
        spec = pb.ImportSpec(
            project_id=args.project_id,
            manifest=pb.ManifestImport(
                manifest=common_pb2.ArtifactRef(uri=args.manifest),
                content_column=args.content_column,
                second_content_column=args.second_content_column,
                entity_column=args.entity_column,
                label_time_column=args.label_time_column,
                external_id_column=args.external_id_column,
            ),
        )
    with _client(args) as client:
        return _follow(client, client.submit_import(spec), args.wait)


def cmd_export(args: argparse.Namespace) -> int:
    spec = pb.ExportSpec(
        project_id=args.project_id,
        format=pb.ExportFormat.Value(f"EXPORT_FORMAT_{args.format.upper()}"),
        after_cursor=args.after_cursor,
        dataset_name=args.dataset,
        include_model_labels=args.include_model_labels,
        min_agreement=args.min_agreement,
    )
    with _client(args) as client:
        return _follow(client, client.submit_export(spec), args.wait)


def cmd_prelabel(args: argparse.Namespace) -> int:
    mapping = dict(pair.split("=", 1) for pair in args.map)
    spec = pb.PrelabelSpec(
        project_id=args.project_id,
        endpoint_name=args.endpoint,
        label_mapping=mapping,
        use_entity_id=args.entity_id,
        low_confidence_threshold=args.low_confidence,
        auto_label_target_accuracy=args.auto_label,
    )
    with _client(args) as client:
        return _follow(client, client.submit_prelabel(spec), args.wait)


def cmd_issues(args: argparse.Namespace) -> int:
    spec = pb.LabelIssuesSpec(
        project_id=args.project_id,
        probabilities=common_pb2.ArtifactRef(uri=args.probabilities),
        key_column=args.key_column,
        match_entity_id=args.entity_id,
    )
    with _client(args) as client:
        return _follow(client, client.submit_label_issues(spec), args.wait)


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs = list(client.list_jobs(args.project))
        if structured(args, jobs):
            return 0
        for job in jobs:
            kind = pb.LabelingJobKind.Name(job.kind).removeprefix("LABELING_JOB_KIND_").lower()
            state = common_pb2.JobState.Name(job.status.state).removeprefix("JOB_STATE_")
            print(f"{job.status.job_id:<28} {kind:<13} {state:<10} {job.status.progress.message}")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.watch:
            return _follow(client, client.get_job(args.job_id), True)
        _print(args, client.get_job(args.job_id))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel_job(args.job_id)
    print(f"{job.status.job_id}: {common_pb2.JobState.Name(job.status.state)}")
    return 0


def cmd_exports(args: argparse.Namespace) -> int:
    with _client(args) as client:
        exports = list(client.list_exports(args.project_id))
        if structured(args, exports):
            return 0
        for e in exports:
            print(f"{e.export_id:<28} {e.rows:>9} rows  cursor {e.cursor:<10} {e.artifact.uri}")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    with _client(args) as client:
        a = client.agreement(args.project_id)
    if structured(args, a):
        return 0
    print(
        f"items compared {a.items_compared}: kappa {a.kappa:.3f}, "
        f"Krippendorff alpha {a.krippendorff_alpha:.3f}, span F1 {a.span_f1:.3f}, "
        f"box IoU {a.box_iou:.3f}"
    )
    for label, value in sorted(a.per_label.items()):
        print(f"  label {label:<20} {value:.3f}")
    for x in a.annotators:
        print(f"  {x.annotator:<24} {x.annotations:>6} labels, accuracy {x.accuracy:.3f}")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    with _client(args) as client:
        entries = client.correction_queue(args.project_id, include_resolved=args.all)
    if structured(args, entries):
        return 0
    for e in entries:
        for reason, detail, resolution in zip(e.reasons, e.details, e.resolutions):
            r = pb.CorrectionReason.Name(reason).removeprefix("CORRECTION_REASON_").lower()
            s = pb.CorrectionResolution.Name(resolution).removeprefix("CORRECTION_RESOLUTION_")
            print(f"{e.item.item_id:<28} {e.priority:5.2f} {r:<22} {s.lower():<10} {detail}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    label = sub.add_parser("label", help="labeling projects, items, assignments and review")
    cmds = label.add_subparsers(dest="label_command", metavar="<label command>", required=True)

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:
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
    add("agreement", cmd_agreement, "inter-annotator agreement").add_argument("project_id")
    p = add("queue", cmd_queue, "the correction queue with reasons and resolutions")
    p.add_argument("project_id")
    p.add_argument("--all", action="store_true", help="include resolved entries")

    def job_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", action="store_true", help="follow the job until it ends")

    p = add("import", cmd_import, "import items from a manifest, or bad cases (--endpoint)")
    p.add_argument("project_id")
    p.add_argument("manifest", nargs="?", default="", help="Parquet/JSONL artifact URI")
    p.add_argument("--content-column", required=True)
    p.add_argument("--second-content-column", default="")
    p.add_argument("--entity-column", default="")
    p.add_argument("--label-time-column", default="")
    p.add_argument("--external-id-column", default="")
    p.add_argument("--endpoint", default="", help="import bad cases captured by this endpoint")
    p.add_argument("--max-confidence", type=float, default=0.0)
    p.add_argument("--max-items", type=int, default=0)
    job_args(p)
    p = add("export", cmd_export, "export label rows (Parquet, JSONL or COCO)")
    p.add_argument("project_id")
    p.add_argument("--format", choices=["parquet", "jsonl", "coco"], default="parquet")
    p.add_argument("--after-cursor", default="", help="only labels after an earlier export")
    p.add_argument("--dataset", default="", help="register as this data-service dataset")
    p.add_argument("--include-model-labels", action="store_true")
    p.add_argument("--min-agreement", type=float, default=0.0)
    job_args(p)
    p = add("prelabel", cmd_prelabel, "pre-label items through a serving endpoint")
    p.add_argument("project_id")
    p.add_argument("endpoint")
    p.add_argument("--map", action="append", default=[], help="model_label=project_label")
    p.add_argument("--entity-id", action="store_true", help="send entity ids, not metadata")
    p.add_argument("--low-confidence", type=float, default=0.0)
    p.add_argument("--auto-label", type=float, default=0.0, help="target accuracy, e.g. 0.95")
    job_args(p)
    p = add("issues", cmd_issues, "flag likely label errors from out-of-sample probabilities")
    p.add_argument("project_id")
    p.add_argument("probabilities", help="Parquet artifact URI")
    p.add_argument("--key-column", required=True)
    p.add_argument("--entity-id", action="store_true", help="the key column holds entity ids")
    job_args(p)
    add("jobs", cmd_jobs, "list labeling jobs").add_argument("--project", default="")
    p = add("job", cmd_job, "show (or --watch) a labeling job")
    p.add_argument("job_id")
    p.add_argument("--watch", action="store_true")
    add("cancel", cmd_cancel, "cancel a labeling job").add_argument("job_id")
    add("exports", cmd_exports, "list a project's exports").add_argument("project_id")

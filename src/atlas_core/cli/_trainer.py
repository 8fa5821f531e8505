"""`atlas train ...`: AutoML jobs with a live progress view."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import webbrowser
from pathlib import Path

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.cli._args import count, not_negative, positive, positive_count
from atlas_core.cli._connect import add_connection_args, client_settings
from atlas_core.cli._data import dataset_line, upload
from atlas_core.cli._files import suite_store
from atlas_core.cli._output import show, structured
from atlas_core.cli._serving import parse_model
from atlas_core.clients import DataClient
from atlas_core.clients.serving import model_ref
from atlas_core.clients.trainer import TERMINAL, TrainerClient, automl_spec
from atlas_core.errors import InvalidArgument

_STRATEGIES = {
    "bohb": pb.SEARCH_STRATEGY_HYPERBAND_TPE,
    "tpe": pb.SEARCH_STRATEGY_TPE,
    "random": pb.SEARCH_STRATEGY_RANDOM,
}
_STACKING = {
    "auto": pb.STACKING_MODE_AUTO,
    "on": pb.STACKING_MODE_ON,
    "off": pb.STACKING_MODE_OFF,
}
_EVENT = {v: k for k, v in pb.TrainingEventType.items()}
_CUT = "interrupted: "  # error prefix of a trial cut before any score
_ENSEMBLE = "ensemble("  # how the trainer names its weighted ensemble's pipeline


def _client(args: argparse.Namespace) -> TrainerClient:
    return TrainerClient(client_settings(args, "trainer"))


def _state(value: int) -> str:
    return common_pb2.JobState.Name(value).removeprefix("JOB_STATE_").lower()


_PLAIN_ROLES = ("numeric", "categorical")


def model_first(pipeline: str, width: int = 0) -> str:
    """`mean-impute > scale > xgboost` -> `xgboost (mean-impute > scale)`: the family first, so
    a cut line still names it. An ensemble lists its members' families with their weights.
    With ``width``, longer text is cut at a step and its parenthesis closed (`...`)."""
    if pipeline.startswith(_ENSEMBLE) and pipeline.endswith(")"):
        members = re.split(r" \+ (?=[\d.]+\*)", pipeline[len(_ENSEMBLE) : -1])
        parts = [m.partition("*") for m in members]
        text = "ensemble: " + " + ".join(f"{w} {p.split(' > ')[-1]}" for w, _, p in parts)
        return text if not width or len(text) <= width else text[: width - 3] + "..."
    *steps, model = pipeline.split(" > ")
    if not steps:
        return model
    for kept in range(len(steps), -1, -1):
        shown = steps[:kept] + (["..."] if kept < len(steps) else [])
        text = f"{model} ({' > '.join(shown)})"
        if not width or len(text) <= width:
            return text
    return text


LIVE_HEADER = (
    "trial     state       score      model (steps) | best so far | elapsed"
    "   (score: the job's metric on held-out folds; * = a pruned trial's first folds only)"
)


def trial_line(ev: pb.WatchTrainingJobResponse, kind: str) -> str:
    """One trial event of the live view. A trial cut before any score (its error starts with
    ``interrupted: ``, see ``TrainingResult.trials_interrupted``) shows as interrupted; a pruned
    trial's score covers only the folds it ran, so it is marked partial; the ensemble (a
    negative trial number) is named."""
    t = ev.trial
    best = (
        f" | best {ev.best_so_far.score:.4f} (#{ev.best_so_far.number})"
        if ev.HasField("best_so_far")
        else ""
    )
    clock = f" | {ev.elapsed.ToTimedelta().total_seconds():5.0f}s"
    if ev.HasField("remaining"):
        clock += f", {ev.remaining.ToTimedelta().total_seconds():.0f}s left"
    score = f"{t.score:.4f}"
    if kind == "failed" and t.error.startswith(_CUT):
        kind, score = "interrupted", t.error.removeprefix(_CUT)
    elif kind == "failed":
        score = t.error[:60]
    elif kind == "pruned":
        score = f"{t.score:.4f}*"
    name = "ensemble" if t.number < 0 else f"trial {t.number:>3}"
    partial = " (* partial folds)" if kind == "pruned" else ""
    return f"{name} {kind:<11} {score:<10} {model_first(t.pipeline, 60)}{best}{clock}{partial}"


def follow(client: TrainerClient, job_id: str, out=sys.stdout) -> int:
    """Print one line per trial event until the job ends; returns 0 on success."""
    header = False
    for ev in client.watch(job_id):
        kind = _EVENT.get(ev.event_type, "").removeprefix("TRAINING_EVENT_TYPE_").lower()
        if ev.event_type == pb.TRAINING_EVENT_TYPE_STATUS:
            print(f"[{_state(ev.status.state)}] {ev.status.progress.message}", file=out)
            if ev.status.state in TERMINAL:
                break
            continue
        if ev.event_type == pb.TRAINING_EVENT_TYPE_TRIAL_STARTED:
            continue
        if not header:
            print(LIVE_HEADER, file=out)
            header = True
        print(trial_line(ev, kind.removeprefix("trial_")), file=out, flush=True)
    job = client.get(job_id)
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(
            f"job {job_id} {_state(job.status.state)}: {job.status.error.message}", file=sys.stderr
        )
        return 1
    r = job.result
    print(
        f"done: job {job_id}; best {r.metric} {r.best.score:.4f} "
        f"({model_first(r.best.pipeline, 80)}); "
        f"{r.trials_complete} complete, {r.trials_pruned} pruned, {r.trials_failed} failed, "
        f"{r.trials_interrupted} interrupted; "
        f"bundle {r.model_bundle.uri}",
        file=out,
    )
    if r.HasField("registration"):
        print(registration_line(r.registration), file=out)
        if r.registration.state != pb.REGISTRATION_STATE_REGISTERED:
            return 1
    return 0


def registration_line(reg: pb.ModelRegistration) -> str:
    name = reg.model_version.model_name
    if reg.state == pb.REGISTRATION_STATE_REGISTERED:
        return f"registered {name}:{reg.model_version.version} (alias {reg.alias})"
    return (
        f"registration of {name} failed after {reg.attempts} attempt(s): {reg.error}; "
        "the bundle above is kept (atlas deploy register)"
    )


def run_spec(args: argparse.Namespace) -> pb.TrainingJobSpec:
    """The job `atlas train run` submits."""
    dataset = None
    if args.dataset:
        name, _, version = args.dataset.partition("@")
        dataset = (name, int(version or 0))
    replaces = None
    if args.replaces:
        replaces = model_ref(*parse_model(args.replaces))
    return automl_spec(
        target=args.target,
        dataset=dataset,
        artifact_uri=args.artifact or "",
        wall_seconds=args.budget,
        max_trials=args.trials,
        seed=args.seed,
        strategy=_STRATEGIES[args.strategy],
        cpus=args.cpus,
        register=args.register or "",
        alias=args.alias,
        replaces=replaces,
        column_roles=dict(args.role or []),
        stacking=_STACKING[args.stacking],
    )


def column_role(text: str) -> tuple[str, str]:
    """`--role COLUMN=ROLE` (the trainer checks the column and the role)."""
    column, sep, role = text.rpartition("=")
    if not sep or not column or not role:
        raise argparse.ArgumentTypeError(
            f"write COLUMN=ROLE (e.g. created_at=datetime), got {text}"
        )
    return column, role


def _upload_file(args: argparse.Namespace) -> None:
    """`train run --file`: the file becomes a dataset version first (see `atlas data upload`)."""
    if not args.target:
        raise InvalidArgument("--file needs --target COLUMN (the column to predict)")
    with DataClient(client_settings(args, "data")) as data:
        dataset = upload(args, data, Path(args.file), args.target)
    print(dataset_line(dataset))
    args.dataset = f"{dataset.ref.dataset_id}@{dataset.ref.version}"


def cmd_run(args: argparse.Namespace) -> int:
    if args.file:
        _upload_file(args)
    spec = run_spec(args)
    with _client(args) as client:
        job = client.submit(spec)
        print(f"submitted training job {job.status.job_id} (study {job.study_name})")
        if args.detach:
            return 0
        try:
            return follow(client, job.status.job_id)
        except KeyboardInterrupt:
            print(f"\nstopped following; the job goes on (atlas train cancel {job.status.job_id})")
            return 130


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.follow:
            return follow(client, args.job_id)
        show(args, client.get(args.job_id), default="json")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    with _client(args) as client:
        board = client.leaderboard(args.job_id, args.limit)
    if structured(args, board):
        return 0
    print(f"{'rank':>4} {'trial':>5} {board.metric:>10} {'fit s':>7} {'pred ms/1k':>10}  pipeline")
    for rank, t in enumerate(board.entries, 1):
        print(
            f"{rank:>4} {t.number:>5} {t.score:>10.4f} "
            f"{t.fit_time.ToTimedelta().total_seconds():>7.2f} "
            f"{t.predict_time_per_1k.ToTimedelta().total_seconds() * 1000:>10.1f}  "
            f"{t.pipeline[:70]}"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs = list(client.list())
        if structured(args, jobs):
            return 0
        for job in jobs:
            best = f"{job.result.best.score:.4f}" if job.HasField("result") else "-"
            print(
                f"{job.status.job_id}  {_state(job.status.state):<10} best {best:<8} "
                f"target {job.spec.target_column}"
            )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        state = _state(client.cancel(args.job_id).status.state)
    # Cancelling is asynchronous: a running job stops at its next trial boundary.
    print(f"cancel requested; job {args.job_id} is {state}" if state == "running" else state)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.report(args.job_id)
        board = client.leaderboard(args.job_id, 5) if not args.output else None
    if board is not None:
        print("\n".join(report_summary(report, board)))
    else:
        show(args, report)
    if args.save or args.open:
        paths = _save_plots(args, report, Path(args.save or tempfile.mkdtemp(prefix="atlas-")))
        for path in paths:
            print(f"saved {path}")
            if args.open:
                webbrowser.open(path.resolve().as_uri())
    return 0


def report_summary(report: pb.TrainingReport, board: pb.GetLeaderboardResponse) -> list[str]:
    """`train report` for people: leaderboard, importance, bias, warnings, plots."""
    lines = [f"leaderboard ({board.metric}, best first):"]
    for rank, t in enumerate(board.entries, 1):
        name = (
            "ensemble"
            if t.number == -2
            else f"L{t.stack_level} m{-t.number % 100}"
            if t.number < 0
            else f"trial {t.number}"
        )
        lines.append(f"  {rank}. {name:<10} {t.score:.4f}  {model_first(t.pipeline, 100)}")
    used = [f for f in report.feature_importance if f.feature not in report.dropped_columns]
    if used:
        lines.append(f"importance ({report.importance_method or 'model'}):")
        top = max(abs(f.importance) for f in used) or 1.0
        for f in used[:15]:
            bar = "#" * round(20 * abs(f.importance) / top)
            lines.append(f"  {f.feature:<28} {f.importance:>9.4f}  {bar}")
    derived = [r for r in report.column_roles if r.overridden or r.role not in _PLAIN_ROLES]
    if derived:
        lines.append("column roles (the rest: numeric or categorical as they are):")
        for r in derived:
            made = f"{len(r.features)} features" if r.features else "dropped"
            lines.append(f"  {r.column}: {r.role} ({r.detail}) -> {made}")
    if report.dropped_columns:
        lines.append("dropped columns:")
        lines += [f"  {c}: {why}" for c, why in sorted(report.dropped_columns.items())]
    if report.bias_metrics:
        lines.append("bias (per facet value: rows, difference in proportions, KS distance):")
        for b in report.bias_metrics:
            lines.append(
                f"  {b.facet_column}={b.facet_value:<16} {b.rows:>7} "
                f"{b.difference_in_proportions:>8.3f} {b.ks_distance:>8.3f}"
            )
    if report.stacking:
        lines.append(f"stacking: {report.stacking} (final model: {report.stack_levels} layer(s))")
    search = [p for p in report.score_curve if p.series == "search"]
    if search:
        curve = ", ".join(f"{p.elapsed_seconds:.0f}s {p.score:.4f}" for p in search[-4:])
        layers = ", ".join(
            f"L{p.stack_level} {p.score:.4f}" for p in report.score_curve if p.series == "ensemble"
        )
        lines.append(f"score over time (search best: ... {curve}; ensemble: {layers or '-'})")
    if report.warnings:
        lines.append("warnings:")
        lines += [f"  - {w}" for w in report.warnings]
    if report.plots:
        lines.append("plots (--save DIR or --open): " + ", ".join(p.name for p in report.plots))
    return lines


def _save_plots(args: argparse.Namespace, report: pb.TrainingReport, out: Path) -> list[Path]:
    store = suite_store(args)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for plot in report.plots:
        key = store.key_for_uri(plot.artifact.uri)
        path = out / f"{plot.name}{Path(key).suffix or '.html'}"
        path.write_bytes(store.get_bytes(key))
        paths.append(path)
    return paths


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="AutoML training jobs (trainer service)")
    cmds = train.add_subparsers(dest="train_command", metavar="<train command>", required=True)

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text, description=help_text)
        add_connection_args(p)
        p.set_defaults(func=fn)
        return p

    p = add("run", cmd_run, "start an AutoML job and show its trials live")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="data-service dataset id[@version]")
    src.add_argument("--artifact", help="s3://bucket/key of a Parquet file")
    src.add_argument(
        "--file", help="a local .csv, .parquet or .jsonl file (uploaded as a dataset first)"
    )
    p.add_argument(
        "--target", default="", help="column to predict (default: the dataset's label column)"
    )
    p.add_argument("--budget", type=positive, default=120.0, help="wall-clock seconds")
    p.add_argument("--trials", type=count, default=0, help="max trials (0 = no limit)")
    p.add_argument("--strategy", choices=sorted(_STRATEGIES), default="bohb")
    p.add_argument("--cpus", type=not_negative, default=0, help="CPU request (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detach", action="store_true", help="submit and return")
    p.add_argument(
        "--register", metavar="MODEL", help="register the bundle as a version of this model"
    )
    p.add_argument(
        "--alias", default="candidate", help="alias for the registered version (--register)"
    )
    p.add_argument(
        "--role",
        action="append",
        type=column_role,
        metavar="COLUMN=ROLE",
        help="override a column's inferred role (numeric, categorical, datetime, text, "
        "identifier, latitude, longitude); repeatable",
    )
    p.add_argument(
        "--stacking",
        choices=sorted(_STACKING),
        default="auto",
        help="multi-layer stacking: auto (when the budget allows), on, off",
    )
    p.add_argument(
        "--replaces",
        metavar="MODEL[:VERSION|@ALIAS]",
        help="the serving model version this one replaces: warm start and lineage",
    )
    p = add("status", cmd_status, "show a training job (or --follow it)")
    p.add_argument("job_id")
    p.add_argument("--follow", action="store_true")
    p = add("leaderboard", cmd_leaderboard, "ranked trials of a job")
    p.add_argument("job_id")
    p.add_argument("--limit", type=positive_count, default=20)
    add("list", cmd_list, "list training jobs")
    p = add("cancel", cmd_cancel, "cancel a training job (keeps completed trials)")
    p.add_argument("job_id")
    p = add("report", cmd_report, "leaderboard, importance, bias metrics, warnings, plots of a job")
    p.add_argument("job_id")
    p.add_argument("--save", metavar="DIR", help="write the report's plots into DIR")
    p.add_argument("--open", action="store_true", help="open the plots in a browser")

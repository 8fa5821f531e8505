"""`atlas deploy ...` (registry, endpoints, rollouts under a traffic policy, alerts, drift,
model quality) and `atlas predict ...` (one row, an entity id, or a file of rows; ground truth
for served predictions) against the serving service. Several replicas in --address are
balanced round-robin."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2, json_format

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.cli._args import count, fraction, not_negative, percent, positive, positive_count
from atlas_core.cli._connect import add_connection_args, client_settings
from atlas_core.cli._output import show_value, structured
from atlas_core.clients.serving import (
    TERMINAL,
    ServingClient,
    ground_truth_from_record,
    variant,
)
from atlas_core.errors import InvalidArgument

_POLICIES = ("all-at-once", "canary", "linear", "blue-green", "promote-if-better")
_QUALITY_METRICS = ("auc", "accuracy", "log_loss", "rmse", "mae")


def _client(args: argparse.Namespace) -> ServingClient:
    return ServingClient(client_settings(args, "serving"))


def _duration(text: str) -> duration_pb2.Duration:
    """'90', '90s', '5m', '1h', '2d', '250ms' -> Duration."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    try:
        for suffix in ("ms", "s", "m", "h", "d"):
            if text.endswith(suffix):
                seconds = float(text[: -len(suffix)]) * units[suffix]
                break
        else:
            seconds = float(text)
    except ValueError:
        raise InvalidArgument(f"bad duration {text!r}: use e.g. 90s, 5m, 1h, 2d") from None
    if not seconds >= 0:
        raise InvalidArgument(f"duration {text!r} is negative: use e.g. 90s, 5m, 1h, 2d")
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def parse_model(text: str) -> tuple[str, int, str]:
    """'credit' (latest), 'credit:3' (version 3) or 'credit@production' (alias)."""
    if "@" in text:
        name, _, alias = text.partition("@")
        return name, 0, alias
    if ":" in text:
        name, _, number = text.partition(":")
        if not number.isdigit():
            raise InvalidArgument(
                f"bad model reference {text!r}: use name, name:VERSION or name@ALIAS"
            )
        return name, int(number), ""
    return text, 0, ""


def _variant(model: str, name: str, weight: float = 100.0, shadow: bool = False) -> pb.Variant:
    model_name, version, alias = parse_model(model)
    return variant(name, model_name, version=version, alias=alias, weight=weight, shadow=shadow)


def _state(value: int, enum: Any, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower().replace("_", " ")


def policy_from_args(args: argparse.Namespace) -> pb.TrafficPolicy:
    policy = pb.TrafficPolicy()
    if args.policy == "canary":
        policy.canary.canary_percent = args.percent
        policy.canary.bake_time.CopyFrom(_duration(args.bake))
    elif args.policy == "linear":
        policy.linear.step_percent = args.percent
        policy.linear.step_interval.CopyFrom(_duration(args.interval))
    elif args.policy == "blue-green":
        policy.blue_green.bake_time.CopyFrom(_duration(args.bake))
    elif args.policy == "promote-if-better":
        pib = policy.promote_if_better
        pib.metric = args.metric or ""
        pib.min_labeled = args.min_labeled
        if args.max_duration:
            pib.max_duration.CopyFrom(_duration(args.max_duration))
    else:
        policy.all_at_once.SetInParent()
    return policy


def alarms_from_args(args: argparse.Namespace) -> pb.AlarmConfig:
    alarms = pb.AlarmConfig(
        max_error_rate=args.max_error_rate,
        min_requests=args.min_requests,
        disable_auto_rollback=args.no_auto_rollback,
    )
    if args.max_p99_ms:
        alarms.max_p99_latency.CopyFrom(_duration(f"{args.max_p99_ms}ms"))
    alarms.window.CopyFrom(_duration(args.alarm_window))
    if args.gate and args.policy in ("canary", "linear"):
        alarms.quality_gate.CopyFrom(
            pb.QualityGate(
                metric=args.metric or "",
                min_labeled=args.min_labeled,
                max_drop=args.max_drop,
                on_insufficient_labels=(
                    pb.INSUFFICIENT_LABELS_ACTION_ROLL_BACK
                    if args.on_few_labels == "rollback"
                    else pb.INSUFFICIENT_LABELS_ACTION_HOLD
                ),
            )
        )
    return alarms


def quality_from_args(args: argparse.Namespace) -> pb.QualityConfig | None:
    """--quality [--entity-feature F] [--quality-alert METRIC=THRESHOLD ...]."""
    if not args.quality:
        return None
    config = pb.QualityConfig(enabled=True, entity_feature=args.entity_feature or "")
    for text in args.quality_alert or []:
        metric, sep, threshold = text.partition("=")
        if not sep or metric not in _QUALITY_METRICS:
            raise InvalidArgument(
                f"bad --quality-alert {text!r}: use METRIC=THRESHOLD, METRIC one of "
                + ", ".join(_QUALITY_METRICS)
            )
        try:
            config.thresholds.add(metric=metric, threshold=float(threshold))
        except ValueError:
            raise InvalidArgument(f"bad --quality-alert {text!r}: not a number") from None
    return config


# -- registry ---------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    with _client(args) as client:
        v = client.register(
            args.model, args.bundle, aliases=args.alias or [], description=args.description
        )
    aliases = f" (aliases: {', '.join(v.aliases)})" if v.aliases else ""
    print(
        f"registered {v.ref.model_name} v{v.ref.version}{aliases}: {v.task_type}, "
        f"{len(v.input_schema.columns)} inputs, bundle {v.bundle.uri}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.model:
            versions = client.list_versions(args.model)
            if structured(args, versions):
                return 0
            for v in versions:
                metrics = ", ".join(f"{k} {m:.4f}" for k, m in sorted(v.metrics.items()))
                print(
                    f"{v.ref.model_name} v{v.ref.version:<3} {','.join(v.aliases) or '-':<20}"
                    f" {v.task_type:<12} {metrics}"
                )
            return 0
        models = client.list_models()
        if structured(args, models):
            return 0
        for m in models:
            aliases = ", ".join(f"{a}=v{n}" for a, n in sorted(m.aliases.items()))
            print(f"{m.name:<24} latest v{m.latest_version:<4} {aliases}")
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    with _client(args) as client:
        v = client.set_alias(args.model, args.alias, args.version)
    print(f"{v.ref.model_name}@{args.alias} -> v{v.ref.version}")
    return 0


# -- endpoints --------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    spec = pb.EndpointSpec(
        name=args.endpoint,
        variants=[_variant(args.model, args.variant)],
        description=args.description,
    )
    spec.capacity.warm = args.warm
    spec.capacity.max_concurrency = args.max_concurrency
    if args.max_concurrency:
        spec.capacity.max_queue = args.max_queue
    if args.capture:
        spec.capture.enabled, spec.capture.sample_fraction = True, args.capture
    quality = quality_from_args(args)
    if quality is not None:
        spec.quality.CopyFrom(quality)
    if args.lookup:
        spec.feature_lookup.feature_groups.add(name=args.lookup)
        spec.feature_lookup.fallback = (
            pb.FALLBACK_POLICY_DEFAULTS if args.fallback == "defaults" else pb.FALLBACK_POLICY_FAIL
        )
    with _client(args) as client:
        ep = client.create_endpoint(spec)
    print(f"endpoint {ep.spec.name} serving {_describe(ep)}")
    return 0


def _describe(ep: pb.Endpoint) -> str:
    parts = []
    for v in ep.spec.variants:
        role = " shadow" if v.role == pb.VARIANT_ROLE_SHADOW else f" {v.weight:g}%"
        parts.append(f"{v.name}={v.model.model_name} v{v.resolved_version}{role}")
    return ", ".join(parts)


def cmd_update(args: argparse.Namespace) -> int:
    """A rollout of new variants under a traffic policy (SubmitDeployment)."""
    variants = [_variant(args.model, args.variant)]
    for i, shadow in enumerate(args.shadow or []):
        variants.append(_variant(shadow, f"shadow-{i + 1}", weight=0, shadow=True))
    with _client(args) as client:
        dep = client.deploy(
            args.endpoint, variants, policy=policy_from_args(args), alarms=alarms_from_args(args)
        )
        print(f"deployment {dep.deployment_id}: {args.policy} to {args.model} on {args.endpoint}")
        if args.detach:
            return 0
        return _follow(client, dep.deployment_id)


def _follow(client: ServingClient, deployment_id: str, out: Any = sys.stdout) -> int:
    last: pb.Deployment | None = None
    for item in client.watch_deployment(deployment_id):
        last = item.deployment
        if item.event:
            traffic = ", ".join(f"{k} {w:g}%" for k, w in sorted(last.traffic.items()))
            print(f"  {item.event:<28} traffic: {traffic}", file=out, flush=True)
        if last.state in TERMINAL:
            break
    if last is None:
        return 1
    state = _state(last.state, pb.DeploymentState, "DEPLOYMENT_STATE_")
    print(
        f"deployment {deployment_id} {state}"
        + (f": {last.error.message}" if last.error.message else ""),
        file=out,
    )
    return 0 if last.state == pb.DEPLOYMENT_STATE_SUCCEEDED else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if not args.endpoint:
            endpoints = client.list_endpoints()
            if structured(args, endpoints):
                return 0
            for ep in endpoints:
                print(
                    f"{ep.spec.name:<24} "
                    f"{_state(ep.state, pb.EndpointState, 'ENDPOINT_STATE_'):<10} "
                    f"{_describe(ep)}"
                )
            return 0
        ep = client.get_endpoint(args.endpoint)
        if structured(args, ep):
            return 0
        print(
            f"endpoint {ep.spec.name}: {_state(ep.state, pb.EndpointState, 'ENDPOINT_STATE_')}"
            f"; {_describe(ep)}"
        )
        if ep.active_deployment_id:
            dep = client.get_deployment(ep.active_deployment_id)
            print(
                f"  rollout {dep.deployment_id}: "
                f"{_state(dep.state, pb.DeploymentState, 'DEPLOYMENT_STATE_')} step "
                f"{dep.step + 1}/{dep.total_steps}"
            )
        print(
            f"  {'variant':<12} {'version':>7} {'traffic':>7} {'qps':>8} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'errors':>7} {'batch':>6} {'loaded':>6}"
        )
        for s in client.stats(args.endpoint, args.window):
            print(
                f"  {s.variant:<12} {s.model_version:>7} {s.traffic_percent:>6.0f}% "
                f"{s.qps:>8.1f} {s.p50_ms:>7.2f} {s.p99_ms:>7.2f} {s.error_rate:>7.2%} "
                f"{s.mean_batch_size:>6.1f} {s.loaded_replicas:>6}"
            )
            if s.HasField("shadow") and s.shadow.compared:
                print(
                    f"    shadow: {s.shadow.compared} compared, agreement "
                    f"{s.shadow.label_agreement:.1%}, mean |score diff| "
                    f"{s.shadow.mean_abs_score_diff:.4f}, p99 {s.shadow.p99_ms:.2f} ms"
                )
            if s.HasField("quality") and s.quality.labeled:
                print("    " + _quality_line(s.quality))
                if s.quality.HasField("paired"):
                    print("    " + _paired_line(s.quality.paired))
    return 0


def _quality_line(q: pb.VariantQuality) -> str:
    metrics = ", ".join(
        f"{m.metric} {m.value:.4f} [{m.lower:.4f}, {m.upper:.4f}]" for m in q.metrics
    )
    return f"quality on {q.labeled} labeled: {metrics or 'n/a'}"


def _paired_line(c: pb.PairedComparison) -> str:
    verdict = (
        "better" if c.challenger_better else "worse" if c.significant else "no significant change"
    )
    return (
        f"vs {c.baseline_variant} on {c.pairs} same requests: {c.metric} "
        f"{c.difference:+.4f} [{c.lower:+.4f}, {c.upper:+.4f}] ({verdict})"
    )


def cmd_quality(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.model_quality(
            args.endpoint,
            start=_now() - _duration(args.since).ToTimedelta().total_seconds(),
            variant=args.variant or "",
            metric=args.metric or "",
        )
    print(f"endpoint {args.endpoint} ({report.task}), last {args.since}:")
    if not report.variants:
        print("  no labeled predictions in the window")
    for q in report.variants:
        role = " (shadow)" if q.shadow else ""
        print(f"  {q.variant} v{q.model_version}{role}: {_quality_line(q)}")
        if q.HasField("paired"):
            print(f"    {_paired_line(q.paired)}")
    return 0


def _now() -> float:
    import time

    return time.time()


def cmd_history(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deployments = client.list_deployments(args.endpoint)
        if structured(args, deployments):
            return 0
        for dep in deployments:
            targets = ", ".join(
                f"{v.name}={v.model.model_name} v{v.resolved_version}" for v in dep.target_variants
            )
            policy = dep.policy.WhichOneof("policy") or "all_at_once"
            print(
                f"{dep.deployment_id}  "
                f"{_state(dep.state, pb.DeploymentState, 'DEPLOYMENT_STATE_'):<12} "
                f"{policy:<12} {targets}"
            )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dep = client.rollback(args.endpoint)
        print(f"rollback {dep.deployment_id} of {args.endpoint} started")
        return 0 if args.detach else _follow(client, dep.deployment_id)


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dep = client.cancel_deployment(args.deployment_id)
        final = client.wait_deployment(dep.deployment_id, timeout=60)
    print(
        f"deployment {dep.deployment_id} "
        f"{_state(final.state, pb.DeploymentState, 'DEPLOYMENT_STATE_')}"
    )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_endpoint(args.endpoint)
    print(f"endpoint {args.endpoint} deleted")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.ack:
            client.acknowledge_alert(args.ack)
            print(f"alert {args.ack} acknowledged")
            return 0
        alerts = client.alerts(args.endpoint or "")
        if structured(args, alerts):
            return 0
        for a in alerts:
            kind = _state(a.kind, pb.AlertKind, "ALERT_KIND_")
            print(
                f"{a.alert_id}  {a.create_time.ToDatetime():%Y-%m-%d %H:%M:%S}  "
                f"{a.endpoint.endpoint_name:<16} {kind:<16} {a.message}"
            )
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.monitor(
            args.endpoint,
            window_s=args.window,
            psi_threshold=args.psi,
            repeat_every_s=args.every,
            min_rows_per_feature=args.min_rows,
        )
        print(f"monitoring job {job.status.job_id} submitted")
        if args.detach or args.every:
            return 0
        job = client.wait_monitoring_job(job.status.job_id)
    r = job.report
    if structured(args, r):
        return 0
    print(f"{r.rows} captured rows compared; drift detected: {r.drift_detected}")
    for f in list(r.features)[: args.top]:
        if f.not_enough_data:
            print(f"  {f.feature:<32} not enough data ({f.rows} values)")
            continue
        print(
            f"  {f.feature:<32} PSI {f.psi:7.3f}  KS {f.ks_statistic:.3f} "
            f"(p={f.ks_p_value:.2g}){'  DRIFTED' if f.drifted else ''}"
        )
    if r.prediction.feature:
        print(
            f"  {'prediction':<32} PSI {r.prediction.psi:7.3f}"
            f"{'  DRIFTED' if r.prediction.drifted else ''}"
        )
    return 0


_BAD_CASE_REASONS = {
    "low-confidence": pb.BAD_CASE_REASON_LOW_CONFIDENCE,
    "drift": pb.BAD_CASE_REASON_HIGH_DRIFT,
    "disagreement": pb.BAD_CASE_REASON_SHADOW_DISAGREEMENT,
    "wrong": pb.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH,
}


def cmd_bad_cases(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.bad_cases(
            args.endpoint,
            args.project,
            [_BAD_CASE_REASONS[r] for r in args.reason or []],
            window_s=_duration(args.since).ToTimedelta().total_seconds() if args.since else 0.0,
            max_confidence=args.max_confidence,
            min_drift_score=args.min_drift,
            regression_tolerance=args.tolerance,
            content_feature=args.content_feature or "",
            max_items=args.max_items,
            repeat_every_s=_duration(args.every).ToTimedelta().total_seconds()
            if args.every
            else 0.0,
        )
        print(f"bad-case job {job.status.job_id} submitted")
        if args.detach or args.every:
            return 0
        last = ""
        for event in client.watch_monitoring_job(job.status.job_id):
            message = event.status.progress.message
            if message and message != last:
                print(f"  {message}")
                last = message
            job = event
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(
            f"job {_state(job.status.state, common_pb2.JobState, 'JOB_STATE_')}: "
            f"{job.status.error.reason}: {job.status.error.message}",
            file=sys.stderr,
        )
        return 1
    r = job.bad_case_report
    reasons = ", ".join(f"{k.lower()} {v}" for k, v in sorted(r.reason_counts.items()))
    print(
        f"{r.rows_scanned} captured rows, {r.selected} bad cases ({reasons or 'none'}): "
        f"{r.items_added} added to {r.labeling_project_id}, {r.items_skipped} already there"
    )
    return 0


# -- predictions ------------------------------------------------------------------------------


def _prediction_dict(p: pb.Prediction) -> dict[str, Any]:
    return json_format.MessageToDict(p, preserving_proto_field_name=True)


def cmd_predict_row(args: argparse.Namespace) -> int:
    features = None
    if args.features:
        try:
            features = json.loads(args.features)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                f"--features is not valid JSON ({exc.msg} at column {exc.colno}); "
                """give an object such as '{"age": 41, "city": "Oslo"}'"""
            ) from None
    entity: int | str | None = None
    if args.entity is not None:
        entity = int(args.entity) if args.entity.lstrip("-").isdigit() else args.entity
    if features is None and entity is None:
        raise InvalidArgument("give --features JSON or --entity ID")
    with _client(args) as client:
        resp = client.predict(
            args.endpoint,
            features,
            entity_id=entity,
            explain=args.explain,
            all_scores=args.all_scores,
        )
    out = {
        "variant": resp.variant,
        "model": f"{resp.model.model_name} v{resp.model.version}",
        **_served(resp.served_version),
        **_prediction_dict(resp.prediction),
    }
    show_value(args, out)
    return 0


def _served(served: pb.ServedVersion) -> dict[str, Any]:
    """Which version of the bundle's model answered, why and how it was scored (nothing
    when the server does not say)."""
    if not (served.name or served.scoring):
        return {}
    return {
        "served_version": served.name or "(the bundle's only version)",
        "served_because": served.reason,
        "scoring": served.scoring,
    }


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .csv, .jsonl or .parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with path.open(newline="") as fh:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def cmd_predict_batch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.artifact:
            resp = client.predict_artifact(args.endpoint, args.artifact, all_scores=args.all_scores)
            print(
                f"{resp.variant} ({resp.model.model_name} v{resp.model.version}) wrote "
                f"{resp.output_artifact.uri}"
            )
            return 0
        rows = read_rows(Path(args.file))
        resp = client.predict_batch(args.endpoint, rows, all_scores=args.all_scores)
    for p in resp.predictions:
        print(json.dumps(_prediction_dict(p)))
    served = resp.served_version
    version = f", {served.name} version" if served.name else ""
    scoring = f", {served.scoring} scoring" if served.scoring else ""
    print(
        f"{len(resp.predictions)} rows by {resp.variant} "
        f"({resp.model.model_name} v{resp.model.version}{version}{scoring})",
        file=sys.stderr,
    )
    return 0


def read_ground_truth(path: Path) -> list[pb.GroundTruth]:
    """Records of a .csv or .jsonl file: outcome plus prediction_id (and row) or entity_id
    (and start_time/end_time). CSV values stay text until typed per field."""
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            records = []
            for n, line in enumerate(lines, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InvalidArgument(f"{path}:{n}: not JSON ({exc.msg})") from None
        elif path.suffix == ".csv":
            with path.open(newline="") as fh:
                records = list(csv.DictReader(fh))
        else:
            raise InvalidArgument(f"{path}: use a .csv or .jsonl file")
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    items = []
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise InvalidArgument(f"{path}: record {n} is not an object")
        try:
            items.append(ground_truth_from_record(record))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: record {n}: {exc.message}") from None
    if not items:
        raise InvalidArgument(f"{path}: no records")
    return items


def _single_ground_truth(args: argparse.Namespace) -> list[pb.GroundTruth]:
    if args.outcome is None:
        raise InvalidArgument("give --file, or --outcome with --prediction or --entity")
    record = {
        "outcome": args.outcome,
        "prediction_id": args.prediction,
        "row": args.row,
        "entity_id": args.entity,
        "start_time": args.start,
        "end_time": args.end,
    }
    return [ground_truth_from_record(record)]


def cmd_truth(args: argparse.Namespace) -> int:
    """Attach true outcomes; rejected items are listed (exit 1 when any)."""
    items = read_ground_truth(Path(args.file)) if args.file else _single_ground_truth(args)
    with _client(args) as client:
        if len(items) > 1000 or args.stream:
            summary = client.attach_ground_truth_stream(
                args.endpoint, items, request_id=args.request_id or ""
            )
            rejected = list(summary.rejected_items)
        else:
            summary = client.attach_ground_truth(
                args.endpoint, items, request_id=args.request_id or ""
            )
            rejected = [r for r in summary.results if r.status == pb.GROUND_TRUTH_STATUS_REJECTED]
    print(
        f"{summary.accepted} accepted, {summary.updated} updated, "
        f"{summary.duplicates} duplicates, {summary.rejected} rejected"
    )
    for r in rejected:
        print(f"  item {r.index + 1}: {r.error.reason}: {r.error.message}", file=sys.stderr)
    return 1 if rejected else 0


# -- parsers ----------------------------------------------------------------------------------


def _adder(
    group: argparse._SubParsersAction,
) -> Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]:
    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_text, description=help_text)
        add_connection_args(p)
        p.set_defaults(func=fn)
        return p

    return add


def _rollout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", choices=_POLICIES, default="canary")
    p.add_argument(
        "--percent",
        type=percent,
        default=10.0,
        help="canary share, or linear step (percent of live traffic)",
    )
    p.add_argument("--bake", default="60s", help="canary / blue-green bake time")
    p.add_argument("--interval", default="30s", help="linear: time between steps")
    p.add_argument("--max-error-rate", type=fraction, default=0.05)
    p.add_argument("--max-p99-ms", type=not_negative, default=0.0, help="p99 alarm (0: off)")
    p.add_argument("--min-requests", type=count, default=20)
    p.add_argument("--alarm-window", default="30s")
    p.add_argument("--no-auto-rollback", action="store_true")
    p.add_argument(
        "--gate",
        action="store_true",
        help="canary/linear: gate each step on ground-truth quality vs the current model",
    )
    p.add_argument("--metric", choices=_QUALITY_METRICS, help="gate / promote-if-better metric")
    p.add_argument(
        "--min-labeled", type=count, default=0, help="labels needed per side (0: the default)"
    )
    p.add_argument(
        "--max-drop", type=not_negative, default=0.0, help="gate: largest tolerated drop"
    )
    p.add_argument(
        "--on-few-labels",
        choices=("hold", "rollback"),
        default="hold",
        help="gate: when a step's bake ends without enough labels",
    )
    p.add_argument("--max-duration", help="promote-if-better: give up after (e.g. 2h)")
    p.add_argument(
        "--shadow",
        action="append",
        metavar="MODEL",
        help="also mirror traffic to this model (shadow variant)",
    )
    p.add_argument("--detach", action="store_true", help="submit and return")


def register(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser("deploy", help="model registry, endpoints and safe rollouts")
    add = _adder(
        deploy.add_subparsers(dest="deploy_command", metavar="<deploy command>", required=True)
    )
    p = add("register", cmd_register, "register a model bundle as a new model version")
    p.add_argument("model")
    p.add_argument("bundle", help="s3://bucket/key of the bundle (e.g. from `atlas train`)")
    p.add_argument("--alias", action="append", help="point this alias at the new version")
    p.add_argument("--description", default="")
    p = add("models", cmd_models, "list models, or the versions of one")
    p.add_argument("model", nargs="?")
    p = add("alias", cmd_alias, "point an alias (e.g. production) at a version")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("version", type=int)
    p = add("create", cmd_create, "create an endpoint serving one model version")
    p.add_argument("endpoint")
    p.add_argument("--model", required=True, help="name, name:VERSION or name@ALIAS")
    p.add_argument("--variant", default="blue", help="variant name")
    p.add_argument("--warm", action="store_true", help="preload on every replica")
    p.add_argument("--max-concurrency", type=count, default=0)
    p.add_argument("--max-queue", type=count, default=0)
    p.add_argument("--capture", type=fraction, default=0.0, help="sampled fraction to capture")
    p.add_argument("--lookup", help="feature group for entity-id requests")
    p.add_argument("--fallback", choices=("fail", "defaults"), default="fail")
    p.add_argument(
        "--quality", action="store_true", help="record predictions for ground truth and quality"
    )
    p.add_argument("--entity-feature", help="inline rows: the feature naming the entity")
    p.add_argument(
        "--quality-alert",
        action="append",
        metavar="METRIC=THRESHOLD",
        help="alert when the metric is worse than the threshold (e.g. auc=0.8)",
    )
    p.add_argument("--description", default="")
    p = add("update", cmd_update, "roll a new model version out under a traffic policy")
    p.add_argument("endpoint")
    p.add_argument("--model", required=True, help="name, name:VERSION or name@ALIAS")
    p.add_argument("--variant", default="green", help="name of the new variant")
    _rollout_args(p)
    p = add("status", cmd_status, "endpoints, or one endpoint's variants and live stats")
    p.add_argument("endpoint", nargs="?")
    p.add_argument("--window", type=positive, default=60.0, help="stats window, seconds")
    p = add("quality", cmd_quality, "model quality per variant from ground truth")
    p.add_argument("endpoint")
    p.add_argument("--since", default="1h", help="window of prediction times (e.g. 30m, 1d)")
    p.add_argument("--variant")
    p.add_argument("--metric", choices=_QUALITY_METRICS, help="metric of shadow comparisons")
    p = add("history", cmd_history, "deployments of an endpoint, newest first")
    p.add_argument("endpoint")
    p = add("rollback", cmd_rollback, "go back to the variants before the last deployment")
    p.add_argument("endpoint")
    p.add_argument("--detach", action="store_true")
    p = add("cancel", cmd_cancel, "cancel a rollout in progress (traffic goes back)")
    p.add_argument("deployment_id")
    p = add("delete", cmd_delete, "delete an endpoint")
    p.add_argument("endpoint")
    p = add("alerts", cmd_alerts, "open alerts (alarms, rollbacks, drift)")
    p.add_argument("endpoint", nargs="?")
    p.add_argument("--ack", metavar="ALERT_ID", help="acknowledge an alert")
    p = add("monitor", cmd_monitor, "compare captured traffic with the training data")
    p.add_argument("endpoint")
    p.add_argument("--window", type=not_negative, default=0.0, help="last N seconds (0: all)")
    p.add_argument("--psi", type=not_negative, default=0.0, help="PSI threshold (default 0.2)")
    p.add_argument("--every", type=not_negative, default=0.0, help="repeat every N seconds")
    p.add_argument(
        "--min-rows",
        type=count,
        default=0,
        help="values a feature needs before it is judged (default 100; fewer: not enough data)",
    )
    p.add_argument("--top", type=positive_count, default=10)
    p.add_argument("--detach", action="store_true")

    p = add("bad-cases", cmd_bad_cases, "send captured bad cases to a labeling project")
    p.add_argument("endpoint")
    p.add_argument("--project", required=True, help="labeling project id (prj-...)")
    p.add_argument(
        "--reason",
        action="append",
        choices=sorted(_BAD_CASE_REASONS),
        required=True,
        help="why a request is a bad case (repeat for several: any of them selects it)",
    )
    p.add_argument("--since", help="only requests of the last (e.g. 1d); default all")
    p.add_argument("--max-confidence", type=float, default=0.0, help="default 0.6")
    p.add_argument("--min-drift", type=float, default=0.0, help="row drift score, default 0.99")
    p.add_argument("--tolerance", type=float, default=0.0, help="regression: |difference| above")
    p.add_argument("--content-feature", help="feature shown as the item (default: all as JSON)")
    p.add_argument("--max-items", type=int, default=0, help="default 10,000")
    p.add_argument("--every", help="repeat every (e.g. 1h): each run continues the window")
    p.add_argument("--detach", action="store_true", help="submit and return")

    predict = sub.add_parser("predict", help="predictions from a serving endpoint")
    add = _adder(
        predict.add_subparsers(dest="predict_command", metavar="<predict command>", required=True)
    )
    p = add("row", cmd_predict_row, "predict one row (features or an entity id)")
    p.add_argument("endpoint")
    p.add_argument("--features", help="JSON object, e.g. '{\"age\": 41}'")
    p.add_argument("--entity", help="entity id: features come from the data service")
    p.add_argument("--explain", action="store_true", help="per-feature contributions")
    p.add_argument("--all-scores", action="store_true")
    p = add("batch", cmd_predict_batch, "predict the rows of a file or a Parquet artifact")
    p.add_argument("endpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help=".csv, .jsonl or .parquet of feature rows")
    src.add_argument("--artifact", help="s3://... Parquet artifact (results to the store)")
    p.add_argument("--all-scores", action="store_true")
    p = add("truth", cmd_truth, "attach true outcomes (ground truth) to served predictions")
    p.add_argument("endpoint")
    p.add_argument(
        "--file", help=".csv or .jsonl: outcome, prediction_id[, row] or entity_id, start/end"
    )
    p.add_argument("--prediction", help="prediction id (as Predict returned it)")
    p.add_argument("--row", type=int, default=0, help="row of a batch prediction")
    p.add_argument("--entity", help="entity id: every prediction of it in the window")
    p.add_argument("--start", help="entity window start (ISO-8601 or epoch seconds)")
    p.add_argument("--end", help="entity window end (exclusive)")
    p.add_argument("--outcome", help="the true label or value")
    p.add_argument("--request-id", help="idempotency key: a retry counts nothing twice")
    p.add_argument("--stream", action="store_true", help="send over one client stream")

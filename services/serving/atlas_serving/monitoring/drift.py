"""The monitor job (runs in a job subprocess): captured inputs of an endpoint over a window
against the bundle's training statistics (PSI and KS per feature) and its prediction
distribution; drift above threshold raises alerts."""

from __future__ import annotations

import io
import uuid
from typing import Any

from google.protobuf import json_format

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.jobs import JobContext
from atlas_core.proto_convert import ts_to_us, us_to_ts
from atlas_serving.bundle_access import artifact_from_pb
from atlas_serving.config import ServingSettings
from atlas_serving.monitoring.alerts import AlertStore, list_capture_files
from atlas_serving.records import now_us

DEFAULT_PSI = 0.2
DEFAULT_KS_P = 0.01


def run_monitor(settings: ServingSettings, ctx: JobContext, raw: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    from atlas_core.bundles import read_manifest
    from atlas_core.bundles.drift import drift_report
    from atlas_serving.runtime import open_runtime  # the job subprocess opens its own

    spec = json_format.ParseDict(raw["spec"], pb.MonitoringSpec())
    rt = open_runtime(settings, migrate=False, connect_data=False)
    engine, store = rt.engine, rt.artifacts
    try:
        endpoint = spec.endpoint.endpoint_name
        start = ts_to_us(spec.start_time) if spec.HasField("start_time") else None
        end = ts_to_us(spec.end_time) if spec.HasField("end_time") else None
        window_end_us = end if end is not None else now_us()
        files, _ = list_capture_files(engine, endpoint, start, end, 0, 100_000)
        if spec.endpoint.variant_name:
            files = [f for f in files if f.variant == spec.endpoint.variant_name]
        ctx.report(0.1, f"reading {len(files)} capture files")
        frames = [
            pd.read_parquet(io.BytesIO(store.get_bytes(artifact_from_pb(store, f.artifact))))
            for f in files
        ]
        data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(data) and start is not None:
            data = data[data["time_us"] >= start]
        if len(data):
            data = data[data["time_us"] < window_end_us]
        bundle = json_format.ParseDict(raw["bundle"], common_pb2.ArtifactRef())
        manifest = read_manifest(store, artifact_from_pb(store, bundle))
        psi_t = spec.psi_threshold or DEFAULT_PSI
        ks_p = spec.ks_p_value_threshold or DEFAULT_KS_P
        report = pb.DriftReport(rows=len(data))
        if len(data):
            features = data[[c for c in data.columns if c.startswith("f_")]]
            features.columns = [c[2:] for c in features.columns]
            ctx.report(0.5, f"comparing {len(data)} rows")
            drift = drift_report(
                manifest["training_stats"]["features"], features, psi_threshold=psi_t, ks_alpha=ks_p
            )
            for f in sorted(drift.features.values(), key=lambda f: -_finite(f.psi)):
                report.features.add(
                    feature=f.feature,
                    psi=_finite(f.psi),
                    ks_statistic=_finite(f.ks_statistic),
                    ks_p_value=_finite(f.ks_pvalue, 1.0),
                    drifted=f.drifted,
                )
            outputs = (manifest.get("prediction_stats") or {}).get("outputs", {})
            column = "value" if manifest.get("task") == "regression" else "label"
            if column in outputs:
                values = data[column] if column == "value" else data[column].astype(str)
                pred = drift_report(
                    {column: outputs[column]},
                    pd.DataFrame({column: values}),
                    psi_threshold=psi_t,
                    ks_alpha=ks_p,
                ).features[column]
                report.prediction.CopyFrom(
                    pb.FeatureDrift(
                        feature="__prediction__",
                        psi=_finite(pred.psi),
                        ks_statistic=_finite(pred.ks_statistic),
                        ks_p_value=_finite(pred.ks_pvalue, 1.0),
                        drifted=pred.drifted,
                    )
                )
        report.drift_detected = any(f.drifted for f in report.features) or report.prediction.drifted
        _raise_alerts(rt.alerts, spec, report, psi_t, ctx.job_id)
        ctx.report(1.0, "done")
        return {
            "report": json_format.MessageToDict(report, preserving_proto_field_name=True),
            "window_end_us": window_end_us,
        }
    finally:
        rt.close()


def _finite(value: float | None, default: float = 0.0) -> float:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return default
    return float(value)


def _raise_alerts(
    alerts: AlertStore, spec: pb.MonitoringSpec, report: pb.DriftReport, psi_t: float, job_id: str
) -> None:
    drifted = [f for f in report.features if f.drifted]
    if report.prediction.drifted:
        drifted.append(report.prediction)
    for f in drifted:
        prediction = f.feature == "__prediction__"
        alerts.add(
            pb.Alert(
                alert_id=uuid.uuid4().hex[:16],
                kind=pb.ALERT_KIND_PREDICTION_DRIFT if prediction else pb.ALERT_KIND_FEATURE_DRIFT,
                endpoint=spec.endpoint,
                feature=f.feature,
                observed=f.psi,
                threshold=psi_t,
                message=(
                    f"{'prediction' if prediction else 'feature ' + f.feature} drifted: "
                    f"PSI {f.psi:.3f}, KS p={f.ks_p_value:.2g}"
                ),
                source_id=job_id,
                create_time=us_to_ts(now_us()),
            )
        )

"""The monitor job (runs in a job subprocess): captured inputs of an endpoint over a window
against the bundle's training statistics (PSI and KS per feature) and its prediction
distribution; drift above threshold raises alerts."""

from __future__ import annotations

import io
import uuid
from typing import Any

from sqlalchemy import Engine

from atlas_core.jobs import JobContext
from atlas_core.storage import ArtifactStore
from atlas_serving.bundle_access import resolve_artifact
from atlas_serving.config import ServingSettings
from atlas_serving.domain import (
    Alert,
    AlertKind,
    BundleRef,
    DriftReport,
    FeatureDrift,
    MonitoringSpec,
)
from atlas_serving.monitoring.alerts import AlertStore, list_capture_files
from atlas_serving.records import now, now_us

DEFAULT_PSI = 0.2
DEFAULT_KS_P = 0.01
# PSI over ten bins needs about ten values per bin; fewer rows alert on noise.
DEFAULT_MIN_ROWS_PER_FEATURE = 100
PREDICTION = "__prediction__"  # the feature name of the prediction's own drift


def run_monitor(settings: ServingSettings, ctx: JobContext, raw: dict[str, Any]) -> dict[str, Any]:
    """The job handler: ``raw`` holds the spec, the served bundle and the endpoint (see
    ServingService.submit_monitoring); returns the report and the window's end."""
    from atlas_serving.runtime import open_runtime  # the job subprocess opens its own

    rt = open_runtime(settings, migrate=False, connect_data=False)
    try:
        spec = rt.codecs.monitoring_spec.from_dict(raw["spec"])
        bundle = rt.codecs.bundle.from_dict(raw["bundle"])
        report, window_end_us = _monitor(rt.engine, rt.artifacts, ctx, spec, bundle)
        _raise_alerts(rt.alerts, spec, report, spec.psi_threshold or DEFAULT_PSI, ctx.job_id)
        ctx.report(1.0, "done")
        return {
            "report": rt.codecs.drift_report.to_dict(report),
            "window_end_us": window_end_us,
        }
    finally:
        rt.close()


def _monitor(
    engine: Engine, store: ArtifactStore, ctx: JobContext, spec: MonitoringSpec, bundle: BundleRef
) -> tuple[DriftReport, int]:
    import pandas as pd

    from atlas_core.bundles import read_manifest
    from atlas_core.bundles.drift import drift_report

    endpoint = spec.endpoint.endpoint_name
    start, end = spec.start_us, spec.end_us
    window_end_us = end if end is not None else now_us()
    files, _ = list_capture_files(engine, endpoint, start, end, 0, 100_000)
    if spec.endpoint.variant_name:
        files = [f for f in files if f.variant == spec.endpoint.variant_name]
    ctx.report(0.1, f"reading {len(files)} capture files")
    frames = [
        pd.read_parquet(
            io.BytesIO(store.get_bytes(resolve_artifact(store, BundleRef(f.uri, f.sha256, f.size))))
        )
        for f in files
    ]
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(data) and start is not None:
        data = data[data["time_us"] >= start]
    if len(data):
        data = data[data["time_us"] < window_end_us]
    manifest = read_manifest(store, resolve_artifact(store, bundle))
    psi_t = spec.psi_threshold or DEFAULT_PSI
    ks_p = spec.ks_p_value_threshold or DEFAULT_KS_P
    report = DriftReport(rows=len(data))
    if len(data):
        features = data[[c for c in data.columns if c.startswith("f_")]]
        features.columns = [c[2:] for c in features.columns]
        ctx.report(0.5, f"comparing {len(data)} rows")
        drift = drift_report(
            manifest["training_stats"]["features"], features, psi_threshold=psi_t, ks_alpha=ks_p
        )
        min_rows = spec.min_rows_per_feature or DEFAULT_MIN_ROWS_PER_FEATURE
        for f in sorted(drift.features.values(), key=lambda f: -_finite(f.psi)):
            report.features.append(_feature_drift(f.feature, f, min_rows))
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
            report.prediction = _feature_drift(PREDICTION, pred, min_rows)
    report.drift_detected = any(f.drifted for f in report.features) or bool(
        report.prediction and report.prediction.drifted
    )
    return report, window_end_us


def _feature_drift(name: str, f: Any, min_rows: int) -> FeatureDrift:
    """One feature's verdict; under ``min_rows`` non-missing values it is not judged."""
    rows = round(f.rows * (1.0 - _finite(f.actual_missing_ratio, 1.0)))
    enough = rows >= min_rows
    return FeatureDrift(
        feature=name,
        psi=_finite(f.psi),
        ks_statistic=_finite(f.ks_statistic),
        ks_p_value=_finite(f.ks_pvalue, 1.0),
        drifted=bool(f.drifted) and enough,
        rows=rows,
        not_enough_data=not enough,
    )


def _finite(value: float | None, default: float = 0.0) -> float:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return default
    return float(value)


def _raise_alerts(
    alerts: AlertStore, spec: MonitoringSpec, report: DriftReport, psi_t: float, job_id: str
) -> None:
    drifted = [f for f in report.features if f.drifted]
    if report.prediction is not None and report.prediction.drifted:
        drifted.append(report.prediction)
    for f in drifted:
        prediction = f.feature == PREDICTION
        alerts.add(
            Alert(
                alert_id=uuid.uuid4().hex[:16],
                kind=AlertKind.PREDICTION_DRIFT if prediction else AlertKind.FEATURE_DRIFT,
                endpoint=spec.endpoint,
                feature=f.feature,
                observed=f.psi,
                threshold=psi_t,
                message=(
                    f"{'prediction' if prediction else 'feature ' + f.feature} drifted: "
                    f"PSI {f.psi:.3f}, KS p={f.ks_p_value:.2g}"
                ),
                source_id=job_id,
                create_time=now(),
            )
        )

"""Monitoring: per-variant statistics shared by the fleet, Prometheus metrics, alerts, the
drift monitor job (``drift.run_monitor``, run in a job subprocess) with its schedule, and
model quality from ground truth (``ground_truth``, ``quality``, ``model_quality``: imported
from their modules, they depend on the data plane's prediction index).
"""

from atlas_serving.monitoring.alerts import AlertStore, list_capture_files
from atlas_serving.monitoring.metrics import ServingMetrics
from atlas_serving.monitoring.schedule import submit_due
from atlas_serving.monitoring.stats import WindowStats, merge, percentile_ms, read_stats

__all__ = [
    "AlertStore",
    "ServingMetrics",
    "WindowStats",
    "list_capture_files",
    "merge",
    "percentile_ms",
    "read_stats",
    "submit_due",
]

"""Prometheus metrics per endpoint and variant, registered on the server's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from atlas_core.rpc.metrics import LATENCY_BUCKETS

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "atlas_serving_requests", "Predicted rows", ["endpoint", "variant", "code"], registry=r
        )
        self.latency = Histogram(
            "atlas_serving_latency_seconds",
            "Prediction latency",
            ["endpoint", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "atlas_serving_batch_size",
            "Rows per model batch",
            ["endpoint", "variant"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "atlas_serving_queue_depth", "Requests waiting for admission", ["endpoint"], registry=r
        )
        self.inflight = Gauge(
            "atlas_serving_inflight", "Requests admitted", ["endpoint"], registry=r
        )
        self.rejected = Counter(
            "atlas_serving_rejected", "Requests refused for capacity", ["endpoint"], registry=r
        )
        self.loop_lag = Gauge(
            "atlas_serving_loop_lag_seconds",
            "How late the event loop runs timers (beyond capacity.max_loop_lag_ms: shedding)",
            registry=r,
        )
        self.unseen_categories = Counter(
            "atlas_serving_unseen_categories",
            "Predicted rows with a category training never saw",
            ["endpoint", "feature"],
            registry=r,
        )
        self.cold_starts = Counter(
            "atlas_serving_cold_starts", "Model loads", ["model", "version"], registry=r
        )
        self.cold_start_seconds = Histogram(
            "atlas_serving_cold_start_seconds", "Model load time", ["model"], registry=r
        )
        self.shadow_agreement = Gauge(
            "atlas_serving_shadow_agreement",
            "Shadow label agreement with live",
            ["endpoint", "variant"],
            registry=r,
        )
        self.traffic = Gauge(
            "atlas_serving_traffic_percent",
            "Live traffic share",
            ["endpoint", "variant"],
            registry=r,
        )
        self.alerts = Gauge(
            "atlas_serving_open_alerts", "Unacknowledged alerts", ["endpoint", "kind"], registry=r
        )
        self.drift = Gauge(
            "atlas_serving_feature_psi",
            "Latest PSI per feature",
            ["endpoint", "feature"],
            registry=r,
        )
        self.loaded_models = Gauge("atlas_serving_loaded_models", "Models in memory", registry=r)
        self.quality = Gauge(
            "atlas_serving_model_quality",
            "Model quality on labeled predictions over the quality window (bound: value, "
            "lower or upper end of the 95% interval)",
            ["endpoint", "variant", "model_version", "metric", "bound"],
            registry=r,
        )
        self.labeled = Gauge(
            "atlas_serving_labeled_predictions",
            "Labeled predictions over the quality window",
            ["endpoint", "variant", "model_version"],
            registry=r,
        )
        self.paired_difference = Gauge(
            "atlas_serving_shadow_quality_difference",
            "Shadow minus live on the same labeled requests over the quality window (bound: "
            "value, lower or upper end of the 95% paired interval)",
            ["endpoint", "variant", "metric", "bound"],
            registry=r,
        )
        self.ground_truth = Counter(
            "atlas_serving_ground_truth_items",
            "Ground truth items by outcome",
            ["endpoint", "status"],
            registry=r,
        )

    def attach(self, registry: CollectorRegistry) -> None:
        """Also expose these metrics on ``registry`` (the server's /metrics)."""
        for collector in list(self.registry._collector_to_names):
            registry.register(collector)

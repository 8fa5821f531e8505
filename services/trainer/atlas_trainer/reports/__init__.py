"""Training reports: feature importance and explanations, bias metrics, plots, dashboard URL.

Domain code only (no grpc): the trainer's servicer converts these dataclasses to
``atlas.trainer.v1`` messages (FeatureImportance, RowContributions, BiasMetrics, Plot).
"""

from __future__ import annotations

from atlas_trainer.reports.bias import BiasMetrics, bias_metrics, facet_metrics
from atlas_trainer.reports.dashboard import dashboard_command, dashboard_storage_url
from atlas_trainer.reports.importance import (
    PERMUTATION,
    SHAP,
    Explanation,
    FeatureImportance,
    ImportanceResult,
    RowContribution,
    explain_rows,
    global_importance,
)
from atlas_trainer.reports.plots import (
    PlotArtifact,
    TrialPoint,
    history_from_study,
    importance_html,
    leaderboard_html,
    optimization_history_html,
    score_over_time_html,
    write_plots,
)

__all__ = [
    "PERMUTATION",
    "SHAP",
    "BiasMetrics",
    "Explanation",
    "FeatureImportance",
    "ImportanceResult",
    "PlotArtifact",
    "RowContribution",
    "TrialPoint",
    "bias_metrics",
    "dashboard_command",
    "dashboard_storage_url",
    "explain_rows",
    "facet_metrics",
    "global_importance",
    "history_from_study",
    "importance_html",
    "leaderboard_html",
    "optimization_history_html",
    "score_over_time_html",
    "write_plots",
]

"""The data plane of one replica: what it serves (endpoints converged from the stored state),
and the prediction path every front end shares: admission, routing, feature lookup, lazy
model loads, dynamic batching, inference, capture, shadow traffic and the prediction index
that ground truth joins.
"""

from atlas_serving.dataplane.artifact_batch import ArtifactAnswer, predict_artifact
from atlas_serving.dataplane.capture import CaptureWriter
from atlas_serving.dataplane.inference import RowResult, ServableModel
from atlas_serving.dataplane.lookup import FeatureFetcher
from atlas_serving.dataplane.models import ModelCache
from atlas_serving.dataplane.predict import Answer, DataPlane
from atlas_serving.dataplane.prediction_log import PredictionLog
from atlas_serving.dataplane.replica import Replica

__all__ = [
    "Answer",
    "ArtifactAnswer",
    "CaptureWriter",
    "DataPlane",
    "FeatureFetcher",
    "ModelCache",
    "PredictionLog",
    "Replica",
    "RowResult",
    "ServableModel",
    "predict_artifact",
]

"""Proto <-> domain conversions of the serving servicer."""

from __future__ import annotations

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.errors import AtlasError
from atlas_serving.dataplane.artifact_batch import ArtifactAnswer
from atlas_serving.dataplane.inference import RowResult
from atlas_serving.dataplane.predict import Answer


def prediction(result: RowResult) -> pb.Prediction:
    return pb.Prediction(
        label=result.label,
        value=result.value,
        scores=result.scores,
        contributions=result.contributions,
        fallback_used=result.fallback_used,
    )


def model_ref(answer: Answer) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(
        model_name=answer.version.ref.model_name, version=answer.version.ref.version
    )


def job_error(exc: AtlasError) -> common_pb2.JobError:
    return common_pb2.JobError(
        code=exc.code.value, reason=exc.reason, message=exc.message, metadata=exc.metadata
    )


def predict_response(answer: Answer) -> pb.PredictResponse:
    return pb.PredictResponse(
        prediction=prediction(answer.results[0]),
        model=model_ref(answer),
        variant=answer.variant,
        prediction_id=answer.prediction_id,
    )


def batch_response(answer: Answer) -> pb.PredictBatchResponse:
    return pb.PredictBatchResponse(
        predictions=[prediction(r) for r in answer.results],
        model=model_ref(answer),
        variant=answer.variant,
        prediction_id=answer.prediction_id,
    )


def artifact_response(done: ArtifactAnswer) -> pb.PredictBatchResponse:
    out = done.output
    return pb.PredictBatchResponse(
        output_artifact=common_pb2.ArtifactRef(
            uri=out.uri,
            sha256=out.sha256,
            size_bytes=out.size,
            media_type="application/vnd.apache.parquet",
        ),
        model=common_pb2.ModelRef(
            model_name=done.version.ref.model_name, version=done.version.ref.version
        ),
        variant=done.variant,
        prediction_id=done.prediction_id,
    )

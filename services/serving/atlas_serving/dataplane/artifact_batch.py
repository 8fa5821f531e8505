"""Batch prediction over a Parquet artifact: rows are read from the object store, predicted
in chunks through the normal data plane (admission, batching, statistics, capture), and the
results are written back to the object store as Parquet (one output row per input row)."""

from __future__ import annotations

import asyncio
import io
import uuid
from dataclasses import dataclass
from typing import Any

from atlas_core.errors import InvalidArgument
from atlas_core.storage import ArtifactRef, ArtifactStore
from atlas_serving.bundle_access import resolve_artifact
from atlas_serving.dataplane.inference import RowResult
from atlas_serving.dataplane.models import ModelKey
from atlas_serving.dataplane.predict import MAX_ROWS, Answer, DataPlane
from atlas_serving.dataplane.variants import ServedVersion
from atlas_serving.domain import BundleRef, PredictOptions

MAX_ARTIFACT_ROWS = 2_000_000
CHUNK_ROWS = 4096
PARQUET = "application/vnd.apache.parquet"


@dataclass
class ArtifactAnswer:
    output: ArtifactRef
    variant: str
    model: ModelKey
    prediction_id: str
    rows: int
    served: ServedVersion = ServedVersion()


def _read_rows(store: ArtifactStore, ref: BundleRef) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = store.get_bytes(resolve_artifact(store, ref))
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError) as exc:
        raise InvalidArgument(
            f"input_artifact {ref.uri} is not a Parquet file: {exc}", reason="BAD_INPUT_ARTIFACT"
        ) from None
    if table.num_rows == 0:
        raise InvalidArgument(f"input_artifact {ref.uri} has no rows", reason="NO_ROWS")
    if table.num_rows > MAX_ARTIFACT_ROWS:
        raise InvalidArgument(
            f"input_artifact has {table.num_rows} rows; the limit is {MAX_ARTIFACT_ROWS}",
            reason="TOO_MANY_ROWS",
        )
    try:
        return table.to_pylist()
    except (pa.ArrowException, UnicodeDecodeError) as exc:  # damaged values in valid pages
        raise InvalidArgument(
            f"input_artifact {ref.uri} holds unreadable values: {exc}",
            reason="BAD_INPUT_ARTIFACT",
        ) from None


def _write_results(
    store: ArtifactStore,
    key: str,
    results: list[RowResult],
    answers: list[Answer],
    all_scores: bool,
) -> ArtifactRef:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {
        "row": list(range(len(results))),
        "label": [r.label for r in results],
        "value": [r.value for r in results],
        "variant": [a.variant for a in answers for _ in a.results],
        "model_version": [a.model[1] for a in answers for _ in a.results],
        # what ground truth names a row by (AttachGroundTruth: prediction id and row)
        "prediction_id": [a.prediction_id for a in answers for _ in a.results],
        "prediction_row": [i for a in answers for i in range(len(a.results))],
    }
    if all_scores:
        classes = sorted({c for r in results for c in r.scores})
        for c in classes:
            columns[f"score_{c}"] = [r.scores.get(c) for r in results]
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return store.put_bytes(key, buffer.getvalue(), {"media-type": PARQUET})


async def predict_artifact(
    plane: DataPlane,
    store: ArtifactStore,
    prefix: str,
    endpoint: str,
    source: BundleRef,
    options: PredictOptions,
    timeout: float | None,
) -> ArtifactAnswer:
    """Predict every row of the Parquet artifact ``source``; results go to
    ``prefix``/<endpoint>/.

    Raises InvalidArgument (not Parquet, no rows, bad features naming the row), NotFound
    (endpoint or artifact), DataLoss (checksum), ResourceExhausted (capacity)."""
    plane.endpoint(endpoint)  # NOT_FOUND before reading anything
    rows = await asyncio.to_thread(_read_rows, store, source)
    answers: list[Answer] = []
    chunk = min(CHUNK_ROWS, MAX_ROWS)
    for start in range(0, len(rows), chunk):
        try:
            answers.append(
                await plane.predict_values(
                    endpoint, rows[start : start + chunk], options, timeout=timeout
                )
            )
        except InvalidArgument as exc:
            row = int(exc.metadata.get("row", "0")) + start
            detail = (
                exc.message.split(": ", 1)[-1] if exc.message.startswith("row ") else exc.message
            )
            raise InvalidArgument(
                f"row {row}: {detail}",
                reason=exc.reason,
                metadata={**exc.metadata, "row": str(row)},
            ) from None
    results = [r for a in answers for r in a.results]
    prediction_id = uuid.uuid4().hex
    key = f"{prefix.rstrip('/')}/{endpoint}/{prediction_id}.parquet"
    output = await asyncio.to_thread(
        _write_results, store, key, results, answers, options.return_all_scores
    )
    last = answers[-1]
    return ArtifactAnswer(
        output, last.variant, last.model, prediction_id, len(results), last.served
    )

"""A real serving service (SQLite/PostgreSQL metadata, SeaweedFS) on port 0, with a real
XGBoost bundle trained on breast_cancer and written with write_bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from grpc import aio

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
from atlas_core.bundle_signing import BundleSigner
from atlas_core.config import AuthSettings, DatabaseSettings, S3Settings, ServerSettings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_core.storage import ArtifactRef, open_artifact_store
from atlas_serving.config import RuntimeSettings, ServingSettings
from atlas_serving.service import ServingService
from atlas_serving.servicer import serving_service_def
from tests.support.signing import TEST_SIGNER, signing_settings

TOKEN = "serving-test-token-0123"


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    return X, y


def write_model(
    s3: S3Settings,
    key: str,
    *,
    trees: int = 20,
    model: Any = None,
    signer: BundleSigner | None = TEST_SIGNER,
) -> ArtifactRef:
    from xgboost import XGBClassifier

    from atlas_core.bundles import write_bundle

    X, y = breast_cancer()
    model = model or XGBClassifier(n_estimators=trees, max_depth=3, n_jobs=1).fit(X, y)
    return write_bundle(
        open_artifact_store(s3),
        key,
        model=model,
        task="binary",
        target="target",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={"auc": 0.99},
        lineage={"dataset": {"name": "breast-cancer", "version": 1}},
        signer=signer,
    )


def serving_settings(tmp: Path, s3: S3Settings, db_url: str, **runtime: Any) -> ServingSettings:
    return ServingSettings(
        server=ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"]})),
        s3=s3,
        database=DatabaseSettings(url=db_url or f"sqlite:///{tmp / 'serving.db'}"),
        bundles=signing_settings(tmp),
        data_dir=tmp,
        runtime=RuntimeSettings(
            poll_seconds=0.1, stats_publish_seconds=0.1, rollout_tick_seconds=0.1, **runtime
        ),
    )


@dataclass
class ServingHarness:
    server: AtlasServer
    service: ServingService
    channel: aio.Channel
    stub: pb_grpc.ServingServiceStub
    settings: ServingSettings

    async def register(
        self, name: str, ref: ArtifactRef, aliases: tuple[str, ...] = ()
    ) -> pb.ModelVersion:
        resp = await self.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                model_name=name,
                bundle=common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size),
                aliases=list(aliases),
            )
        )
        return resp.model_version


async def start_harness(settings: ServingSettings) -> ServingHarness:
    service = ServingService.open(settings)
    await service.start()
    server = create_server(settings.server, [serving_service_def(service)])
    await server.start()
    channel = connect(ClientSettings(target=server.address, token=TOKEN))
    return ServingHarness(server, service, channel, pb_grpc.ServingServiceStub(channel), settings)


async def stop_harness(h: ServingHarness) -> None:
    await h.channel.close()
    await h.server.stop(0)  # on_stop stops the service


@pytest.fixture(scope="session")
def features() -> pd.DataFrame:
    return breast_cancer()[0]


@pytest.fixture
async def serving(tmp_path: Path, s3_settings: S3Settings) -> AsyncIterator[ServingHarness]:
    """SQLite metadata (the PostgreSQL path is covered by test_registry_postgres)."""
    h = await start_harness(serving_settings(tmp_path, s3_settings, ""))
    try:
        yield h
    finally:
        await stop_harness(h)


def row(values: dict[str, Any]) -> pb.PredictRow:
    return pb.PredictRow(
        features=pb.InlineFeatures(
            values={
                k: (
                    common_pb2.Value(string_value=v)
                    if isinstance(v, str)
                    else common_pb2.Value(double_value=float(v))
                )
                for k, v in values.items()
            }
        )
    )


def live(
    name: str, model: str, version: int = 0, weight: float = 100, alias: str = ""
) -> pb.Variant:
    ref = (
        common_pb2.ModelRef(model_name=model, alias=alias)
        if alias
        else common_pb2.ModelRef(model_name=model, version=version)
    )
    return pb.Variant(name=name, model=ref, role=pb.VARIANT_ROLE_LIVE, weight=weight)

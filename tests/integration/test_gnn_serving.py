"""A graph model served: a real graph service trains GraphSAGE on a small SBM (DGL servers and
a trainer as processes), its train job's serving bundle is registered in a real serving
service, and predictions by original node id agree with the job's own predictions and test
accuracy; its node embeddings are read online from a real data service."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as dpb
from atlas.graph.v1 import graph_service_pb2 as gpb
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.bundles import read_manifest
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings
from atlas_core.storage import ArtifactRef
from atlas_graph.sbm import generate_sbm
from tests.grpc.data.conftest import TOKEN as DATA_TOKEN
from tests.grpc.data.conftest import running_data_service
from tests.grpc.graph._jobs import run_job
from tests.grpc.graph.conftest import running_graph_service
from tests.grpc.serving.conftest import live, serving_settings, start_harness, stop_harness

pytestmark = pytest.mark.slow

NODES, COMMUNITIES, SEED = 600, 4, 3
SBM = dict(
    nodes=NODES,
    communities=COMMUNITIES,
    average_degree=10,
    intra_fraction=0.85,
    feature_dims=8,
    feature_noise=1.0,
    seed=SEED,
)


def _node(node_id: int) -> pb.PredictRow:
    return pb.PredictRow(
        features=pb.InlineFeatures(values={"node_id": common_pb2.Value(int64_value=node_id)})
    )


async def test_graph_train_job_is_served_by_node_id(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with (
        running_data_service(tmp_path / "data", s3_settings) as data,
        running_graph_service(
            tmp_path / "graph",
            s3_settings,
            data=ClientSettings(target=data.server.address, token=DATA_TOKEN),
        ) as graph,
    ):
        g = (
            await run_job(graph.stub, generate_graph=gpb.GenerateGraphSpec(name="sbm", **SBM))
        ).graph
        part = (
            await run_job(
                graph.stub,
                partition_graph=gpb.PartitionGraphSpec(graph_id=g.graph_id, num_partitions=2),
            )
        ).partitioning
        ref = common_pb2.GraphRef(graph_id=g.graph_id, partitioning_id=part.partitioning_id)
        job = await run_job(
            graph.stub,
            train=gpb.TrainGraphSpec(
                ref=ref,
                num_trainers=1,
                model=gpb.GNN_MODEL_GRAPHSAGE,
                fan_outs=[5, 5],
                hidden_dims=16,
                epochs=3,
                batch_size=64,
                learning_rate=0.03,
                seed=1,
                embeddings_feature_group="sbm_nodes",
            ),
        )
        result = job.train_result
        assert result.serving_bundle.uri and result.serving_bundle.sha256
        store = graph.service.rt.artifacts
        predictions = pq.read_table(
            io.BytesIO(store.get_bytes(store.key_for_uri(result.predictions.uri)))
        ).to_pandas()
        manifest = read_manifest(store, store.key_for_uri(result.serving_bundle.uri))
        embeddings = pq.read_table(
            io.BytesIO(store.get_bytes(store.key_for_uri(result.embeddings.uri)))
        ).to_pandas()
        assert result.embeddings_feature_group.name == "sbm_nodes"
        assert result.embeddings_feature_group.version == 1
        wanted = [0, 299, NODES - 1]
        online = await data.stub.GetFeatures(
            dpb.GetFeaturesRequest(
                feature_group=common_pb2.FeatureGroupRef(name="sbm_nodes"),
                entity_keys=dpb.EntityKeys(int64_keys=wanted),
            )
        )
        assert list(online.found) == [True] * 3
        vectors = np.frombuffer(online.float32_values, "<f4").reshape(3, -1)
        stored = np.stack(embeddings.set_index("id").loc[wanted, "embedding"].to_list())
        np.testing.assert_array_equal(vectors, stored.astype(np.float32))
    assert manifest["lineage"]["graph_id"] == g.graph_id
    assert manifest["lineage"]["partitioning_id"] == part.partitioning_id
    assert manifest["lineage"]["graph_job_id"] == job.status.job_id
    assert manifest["lineage"]["model_bundle"]["uri"] == result.model_bundle.uri

    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        bundle = result.serving_bundle
        version = await serving.register(
            "sbm-nodes",
            ArtifactRef(uri=bundle.uri, key="", sha256=bundle.sha256, size=bundle.size_bytes),
        )
        assert version.metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
        await serving.stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                spec=pb.EndpointSpec(name="sbm", variants=[live("blue", "sbm-nodes", 1)])
            )
        )
        by_id = predictions.set_index("id")
        for node_id in (0, 1, 299, NODES - 1):
            resp = await serving.stub.Predict(
                pb.PredictRequest(
                    endpoint_name="sbm",
                    row=_node(node_id),
                    options=pb.PredictOptions(return_all_scores=True),
                )
            )
            assert resp.prediction.label == str(by_id.loc[node_id, "label"])
            scores = [resp.prediction.scores[str(c)] for c in range(COMMUNITIES)]
            assert scores == pytest.approx(list(by_id.loc[node_id, "scores"]), abs=1e-6)

        # The job's test accuracy, recomputed from what serving answers for the test nodes.
        truth = generate_sbm(**SBM, train_fraction=0.0, val_fraction=0.0)
        test_nodes = np.flatnonzero(truth.test_mask)
        batch = await serving.stub.PredictBatch(
            pb.PredictBatchRequest(endpoint_name="sbm", rows=[_node(int(n)) for n in test_nodes])
        )
        served = np.array([int(p.label) for p in batch.predictions])
        accuracy = float((served == truth.label[test_nodes]).mean())
        assert accuracy == pytest.approx(result.metrics["test_accuracy"], abs=1e-9)
        assert accuracy > 0.6

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await serving.stub.Predict(pb.PredictRequest(endpoint_name="sbm", row=_node(NODES)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"node id {NODES} " in err.value.details()
    finally:
        await stop_harness(serving)

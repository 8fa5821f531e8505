"""Link prediction on a heterogeneous graph through the graph service's API: an R-GCN encoder
trained by two DGL trainers on two partitions scores held-out user -> merchant payments well
above chance (ROC AUC and MRR in the job's metrics, the same AUC from an infer job), writes
every node type's embeddings to the object store and to one data-service feature group per
type (read back online by original int and string ids); bad target edge types are refused
naming the field."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as dpb
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings
from atlas_graph.sbm import generate_hetero
from tests.grpc.data.conftest import TOKEN as DATA_TOKEN
from tests.grpc.data.conftest import running_data_service

from ._hetero import hetero_import
from ._jobs import run_job
from .conftest import GraphHarness, running_graph_service

PAYS = "user:pays:merchant"


def _linked_graph():  # type: ignore[no-untyped-def]
    """Users pay merchants of their own community 90% of the time; user features point to
    the community (merchant features are noise, devices have none)."""
    return generate_hetero(
        1200, 600, 200, communities=4, feature_noise=0.5, intra_fraction=0.9, seed=11
    )


async def _typed_ref(harness: GraphHarness, parts: int) -> common_pb2.GraphRef:
    graph = (
        await run_job(harness.stub, import_graph=hetero_import(harness, _linked_graph(), "pay"))
    ).graph
    part = (
        await run_job(
            harness.stub,
            partition_graph=pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=parts),
        )
    ).partitioning
    return common_pb2.GraphRef(graph_id=graph.graph_id, partitioning_id=part.partitioning_id)


def _link_spec(ref: common_pb2.GraphRef, target: str, **kw: object) -> pb.TrainGraphSpec:
    return pb.TrainGraphSpec(
        ref=ref,
        task=pb.GRAPH_TASK_LINK_PREDICTION,
        link_prediction=pb.LinkPredictionSpec(
            target_edge_type=target, test_fraction=0.15, eval_negatives=20, split_seed=5
        ),
        fan_outs=[5, 5],
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.slow
async def test_two_trainers_predict_held_out_payments_and_write_every_type(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with (
        running_data_service(tmp_path / "data", s3_settings) as data,
        running_graph_service(
            tmp_path / "graph",
            s3_settings,
            data=ClientSettings(target=data.server.address, token=DATA_TOKEN),
        ) as harness,
    ):
        stub = harness.stub
        ref = await _typed_ref(harness, parts=2)
        await _bad_target_edge_types_are_refused_naming_the_field(stub, ref)
        job = await run_job(
            stub,
            timeout=240,
            train=_link_spec(
                ref,
                PAYS,
                model=pb.GNN_MODEL_RGCN,
                num_trainers=2,
                hidden_dims=16,
                epochs=4,
                batch_size=256,
                learning_rate=0.01,
                dropout=0.1,
                seed=1,
                embeddings_feature_group="pay_nodes",
            ),
        )
        result = job.train_result
        metrics = dict(result.metrics)
        # ~15% of the 3,600 payments are test edges; chance AUC is 0.5 (a user pays its own
        # community's merchants ~92% of the time, a uniform merchant 25%).
        assert 350 < metrics["test_edges"] < 750, metrics
        # A collapsed encoder (one score for every pair) sits at loss ln 2 = 0.693 and its
        # AUC is an artefact of ties: the model must have learned.
        assert metrics["loss"] < 0.66, metrics
        assert metrics["test_auc"] > 0.7 and metrics["val_auc"] > 0.65, metrics
        assert metrics["test_mrr"] > 0.2, metrics
        assert not result.predictions.uri and not result.serving_bundle.uri

        art = harness.service.rt.artifacts
        generated = _linked_graph()
        assert sorted(result.embeddings_by_type) == ["device", "merchant", "user"]
        tables = {}
        for ntype, ref_ in result.embeddings_by_type.items():
            table = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(ref_.uri))))
            tables[ntype] = table.to_pandas().set_index("id")
            assert table.schema.field("embedding").type.list_size == 16
            originals = generated.nodes[ntype].original_ids
            expected = [v.decode() for v in originals] if originals.dtype.kind == "S" else originals
            assert sorted(table.column("id").to_pylist()) == sorted(list(expected))
        # `embeddings` is the target edge type's source type (users).
        users = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(result.embeddings.uri))))
        assert users.num_rows == 1200

        groups = result.embeddings_feature_groups_by_type
        assert {t: g.name for t, g in groups.items()} == {
            "user": "pay_nodes_user",
            "device": "pay_nodes_device",
            "merchant": "pay_nodes_merchant",
        }
        for ntype, keys in (
            ("user", dpb.EntityKeys(int64_keys=[1000, 1000 + 7 * 1199])),
            ("device", dpb.EntityKeys(string_keys=["dev-0", "dev-599"])),
            ("merchant", dpb.EntityKeys(int64_keys=[50, 249])),
        ):
            online = await data.stub.GetFeatures(
                dpb.GetFeaturesRequest(
                    feature_group=common_pb2.FeatureGroupRef(name=groups[ntype].name),
                    entity_keys=keys,
                )
            )
            assert list(online.found) == [True, True], ntype
            vectors = np.frombuffer(online.float32_values, "<f4").reshape(2, -1)
            wanted = list(keys.int64_keys) or list(keys.string_keys)
            stored = np.stack(tables[ntype].loc[wanted, "embedding"].to_list())
            np.testing.assert_array_equal(vectors, stored.astype(np.float32))

        # The bundle re-embeds every type with the same split: the same AUC.
        again = (
            await run_job(
                stub,
                timeout=180,
                infer=pb.InferGraphSpec(
                    ref=ref, model_bundle=result.model_bundle, write_embeddings=True
                ),
            )
        ).train_result
        # Re-embedding sums float32 messages in another order: a few near-tied pairs may swap.
        assert dict(again.metrics)["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-3)
        assert sorted(again.embeddings_by_type) == ["device", "merchant", "user"]


async def _refused(stub, spec: pb.TrainGraphSpec) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitGraphJob(pb.SubmitGraphJobRequest(train=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


async def _bad_target_edge_types_are_refused_naming_the_field(stub, ref) -> None:  # type: ignore[no-untyped-def]
    field = "train.link_prediction.target_edge_type"
    details = await _refused(stub, _link_spec(ref, ""))
    assert f"{field} is empty" in details and PAYS in details
    details = await _refused(stub, _link_spec(ref, "user:pays:shop"))
    assert f"{field} 'user:pays:shop' is not an edge type" in details
    details = await _refused(stub, _link_spec(ref, "pays"))
    assert field in details
    details = await _refused(stub, _link_spec(ref, PAYS, target_node_type="user"))
    assert "train.target_node_type" in details

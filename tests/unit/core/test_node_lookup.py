"""NodeLookup: a graph model's per-node answers by original id (int64 or string), with every
bad id named; and its bundle through the ordinary bundle loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atlas_core.bundles import load_bundle
from atlas_core.bundles.node_lookup import write_node_lookup_bundle
from atlas_core.errors import InvalidArgument
from atlas_core.ml import NodeLookup
from atlas_core.storage import LocalArtifactStore
from tests.support.signing import TEST_SIGNER, TEST_TRUST

PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)


def test_int_ids_answer_in_request_order_and_name_bad_ids() -> None:
    lookup = NodeLookup(np.array([30, -5, 2**40]), PROBS, [0, 1])
    frame = pd.DataFrame({"node_id": [2**40, 30, -5, 30]})
    np.testing.assert_allclose(lookup.predict_proba(frame), PROBS[[2, 0, 1, 0]], rtol=1e-6)
    assert lookup.predict(frame).tolist() == [0, 0, 1, 0]
    assert lookup.rows([30.0]).tolist() == lookup.rows([30]).tolist()
    with pytest.raises(InvalidArgument) as err:
        lookup.rows([30, 31])
    assert err.value.reason == "UNKNOWN_NODE_ID" and "31" in err.value.message
    assert err.value.metadata["node_id"] == "31"
    for bad in ("30", 30.5, True, None):
        with pytest.raises(InvalidArgument) as err:
            lookup.rows([bad])
        assert err.value.reason == "MISTYPED_FEATURES" and "node_id" in err.value.message


def test_string_ids_longer_or_unknown_never_match() -> None:
    lookup = NodeLookup(["bob", "al", "carol"], PROBS, ["no", "yes"])
    assert lookup.rows(["carol", "al"]).tolist() == [2, 0]
    for missing in ("carolyn", "caro", "ALICE"):  # longer than every stored id, a prefix, case
        with pytest.raises(InvalidArgument) as err:
            lookup.rows([missing])
        assert err.value.reason == "UNKNOWN_NODE_ID" and repr(missing) in err.value.message


def test_duplicate_ids_or_misshapen_probabilities_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="appears twice"):
        NodeLookup([1, 2, 1], PROBS, [0, 1])
    with pytest.raises(InvalidArgument, match=r"\[3, 3\]"):
        NodeLookup([1, 2, 3], PROBS, [0, 1, 2])


def test_bundle_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalArtifactStore(tmp_path)
    ref = write_node_lookup_bundle(
        store,
        "graph-jobs/j/serving_bundle.tar",
        node_ids=np.array([b"u-2", b"u-1", b"u-3"]),
        probabilities=PROBS,
        labels=np.array([0, -1, 0]),
        metrics={"test_accuracy": 0.75},
        lineage={"graph_id": "g_1", "partitioning_id": "p_1", "graph_job_id": "j"},
        signer=TEST_SIGNER,
    )
    bundle = load_bundle(store, ref, trust=TEST_TRUST)
    assert bundle.task == "binary" and bundle.classes == [0, 1]
    assert bundle.input_schema.names == ["node_id"]
    assert bundle.lineage["graph_id"] == "g_1" and bundle.metrics["test_accuracy"] == 0.75
    # unlabelled nodes are missing in the label baseline, not a class
    assert bundle.manifest["training_stats"]["target"]["missing_ratio"] == pytest.approx(1 / 3)
    answers = bundle.predictor.predict_proba(pd.DataFrame({"node_id": ["u-3", "u-2"]}))
    np.testing.assert_allclose(answers, PROBS[[2, 0]], rtol=1e-6)

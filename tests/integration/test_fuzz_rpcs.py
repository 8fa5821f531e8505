"""Property-based fuzzing of every RPC of every service against the running suite.

Methods come from the generated contracts (every ``*_service_pb2`` module), so a new RPC is
fuzzed the day it is added. Requests come from strategies derived from each request's
descriptor (tests/support/fuzz.py): random and extreme field values, huge repeated fields,
nested messages, NaN/inf, out-of-range enums and timestamps, and malformed encodings
(truncated, bit-flipped, invalid UTF-8 in a string field). The campaign itself is
tests/support/rpc_fuzz.py: every answer must be success or a status other than
INTERNAL/UNKNOWN, a call without a token must be refused UNAUTHENTICATED, a failed call must
leave the service's stores (metadata tables, online store, files, object store) as they were,
and the server must still report SERVING afterwards.

`make test` runs a short seeded campaign (``ATLAS_FUZZ_EXAMPLES``, default 4 per RPC: ~440
cases); `make fuzz` runs a long one with fresh randomness; ``python bench/chaos.py --fuzz
100000`` records the campaign figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from google.protobuf.descriptor import MethodDescriptor

from tests.support.rpc_fuzz import Campaign, contract_methods
from tests.support.suite import method_path, running_suite

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("ATLAS_FUZZ_EXAMPLES", "4"))
# Seeded (derandomized) unless a campaign asks for fresh randomness.
SEEDED = os.environ.get("ATLAS_FUZZ_RANDOM", "") != "1"
METHODS = contract_methods()


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    with running_suite(tmp_path_factory.mktemp("fuzz-suite")) as running:
        fuzzing = Campaign(running, seeded=SEEDED)
        try:
            yield fuzzing
        finally:
            fuzzing.close()


def test_every_contract_method_is_fuzzed() -> None:
    # a generous floor: the contracts list every service's methods, not a few
    assert len(METHODS) > 100
    assert {m.containing_service.full_name.split(".")[1] for m in METHODS} == {
        "data",
        "graph",
        "labeling",
        "serving",
        "trainer",
    }


@pytest.mark.parametrize("method", METHODS, ids=method_path)
def test_fuzzed_requests_never_fail_internally_nor_change_stores(
    campaign: Campaign, method: MethodDescriptor
) -> None:
    report = campaign.fuzz(method, EXAMPLES)
    assert report.cases >= min(EXAMPLES, 2), report.as_dict()
    assert report.internal == [], report.internal[:3]
    assert report.store_changed == [], report.store_changed[:3]
    assert report.unauthenticated_missing == [], report.unauthenticated_missing[:3]

"""Hypothesis settings of the parser fuzz tests (tests/unit/*/test_fuzz_*.py).

``make test`` runs a short seeded campaign (derandomized, ``ATLAS_FUZZ_EXAMPLES`` examples per
test, 40 by default); ``make fuzz`` sets ``ATLAS_FUZZ_RANDOM=1`` and a large
``ATLAS_FUZZ_EXAMPLES`` for a long one with fresh randomness.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("ATLAS_FUZZ_EXAMPLES", "40"))
SEEDED = os.environ.get("ATLAS_FUZZ_RANDOM", "") != "1"

fuzz_settings = settings(
    max_examples=EXAMPLES,
    derandomize=SEEDED,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

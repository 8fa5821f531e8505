"""Feast side of bench/data_online.py: runs under the Feast venv's python, NOT the project venv.

    python _feast_online.py REPO_DIR ENTITIES FEATURES SECONDS SEED

Generates ENTITIES rows of FEATURES float32 N(0, 1) features (numpy seed SEED, entity ids
1..ENTITIES, one event time), writes a Feast repo in REPO_DIR (SQLite online store, file
offline store, one FeatureView holding all FEATURES), loads the rows with
``write_to_online_store``, then times ``store.get_online_features`` for 1 random entity x
all FEATURES, in-process, for SECONDS after a 1 s warm-up (the OnlineResponse is not
converted with to_dict(): that would only add to Feast's time). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

YAML = """project: atlas_bench_online
registry: {repo}/registry.db
provider: local
online_store:
  type: sqlite
  path: {repo}/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def main() -> None:
    repo, entities, features, seconds, seed = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
        int(sys.argv[5]),
    )
    import feast
    import numpy as np
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32

    root = Path(repo)
    root.mkdir(parents=True, exist_ok=True)
    (root / "feature_store.yaml").write_text(YAML.format(repo=repo))
    rng = np.random.default_rng(seed)
    names = [f"f{i:04d}" for i in range(features)]
    ts = datetime(2024, 1, 1, tzinfo=timezone.utc)
    df = pd.DataFrame(rng.standard_normal((entities, features), dtype=np.float32), columns=names)
    df.insert(0, "entity_id", np.arange(1, entities + 1, dtype=np.int64))
    df["event_timestamp"] = pd.Timestamp(ts)
    df.to_parquet(root / "source.parquet")

    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    source = FileSource(path=str(root / "source.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(
        name="fg",
        entities=[entity],
        ttl=timedelta(days=3650),
        source=source,
        schema=[Field(name=n, dtype=Float32) for n in names],
        online=True,
    )
    store = FeatureStore(repo_path=repo)
    store.apply([entity, view])
    t0 = time.perf_counter()
    chunk = 2_000
    for start in range(0, entities, chunk):
        store.write_to_online_store("fg", df.iloc[start : start + chunk])
    load_s = time.perf_counter() - t0

    refs = [f"fg:{n}" for n in names]
    keys = rng.integers(1, entities + 1, 10_000_000 if seconds > 0 else 1)

    # sanity: one read returns the written values
    got = store.get_online_features(features=refs, entity_rows=[{"entity_id": 1}]).to_dict()
    ok = abs(got[names[-1]][0] - float(df[names[-1]].iloc[0])) < 1e-5

    i = 0
    warm_until = time.perf_counter() + 1.0
    while time.perf_counter() < warm_until:
        store.get_online_features(features=refs, entity_rows=[{"entity_id": int(keys[i])}])
        i += 1
    latencies = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        store.get_online_features(features=refs, entity_rows=[{"entity_id": int(keys[i])}])
        latencies.append(time.perf_counter() - t)
        i += 1
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    print(
        json.dumps(
            {
                "feast_version": feast.__version__,
                "entities": entities,
                "features": features,
                "load_s": load_s,
                "load_rows_per_s": entities / load_s,
                "values_ok": bool(ok),
                "n": n,
                "rps": n / elapsed,
                "p50_ms": 1e3 * latencies[n // 2],
                "p99_ms": 1e3 * latencies[min(n - 1, int(0.99 * n))],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

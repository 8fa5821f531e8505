"""Bytes one entity of 5,000 float32 features takes in each online store backend.

    python bench/online_bytes.py            # 20,000 entities (~1 min)
    python bench/online_bytes.py --quick    # 2,000

Writes N records (one FLOAT32_VECTOR feature of 5,000 dims, int64 keys 1..N, values N(0, 1)
with seed 20261207, 500 per batch through ``OnlineStore.write`` as the data service does)
into an empty LMDB store and into a fresh ``redis-server`` (Debian's binary, loopback, no
persistence), then reports per entity:

* ``record_bytes``: the encoded record alone (``_codec``: header, values, null mask);
* ``lmdb_bytes_per_entity``: LMDB pages in use (``last_pgno + 1``) x page size / N -- the
  file, and the page cache it wants resident;
* ``redis_bytes_per_entity``: INFO ``used_memory`` after - before / N -- jemalloc size
  classes, key, dict entry and the per-group counter included.

Writes bench/results/online_bytes.json (and a dated copy, see _results.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_results  # noqa: E402

DIMS = 5_000
BATCH = 500
SEED = 20261207


def _batches(entities: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from atlas_data.records import RawRecord, RecordBatch
    from atlas_data.schema import (
        EntityKeyType,
        FeatureGroupSpec,
        FeatureSpec,
        FeatureType,
        RecordLayout,
        validate_spec,
    )

    spec = validate_spec(
        FeatureGroupSpec(
            name="vec",
            entity_key="user_id",
            entity_key_type=EntityKeyType.INT64,
            event_time_column="ts",
            features=(FeatureSpec("emb", FeatureType.FLOAT32_VECTOR, DIMS),),
        )
    )
    layout = RecordLayout.for_spec(spec)
    rng = np.random.default_rng(SEED)
    for start in range(1, entities + 1, BATCH):
        keys = range(start, min(start + BATCH, entities + 1))
        values = rng.standard_normal((len(keys), DIMS), dtype=np.float32)
        records = [RawRecord(k, 1, v.astype("<f4").tobytes()) for k, v in zip(keys, values)]
        yield RecordBatch.from_records(layout, EntityKeyType.INT64, records)


def measure(entities: int) -> dict:
    import redis

    from atlas_data.online import OnlineStoreSettings, encode_batch, open_online_store
    from tests.support.redis_nodes import RedisNodes

    first = next(_batches(1))
    record_bytes = len(encode_batch(first, ingestion_time_us=1, schema_version=1)[0])
    out: dict = {"entities": entities, "dims": DIMS, "record_bytes": record_bytes}
    with tempfile.TemporaryDirectory(prefix="atlas-bench-bytes-") as tmp:
        lmdb_settings = OnlineStoreSettings(
            lmdb_path=Path(tmp) / "online.lmdb", lmdb_map_size_bytes=64 * 1024**3
        )
        t0 = time.perf_counter()
        with open_online_store(lmdb_settings) as store:
            for batch in _batches(entities):
                store.write("vec@1", batch, ingestion_time_us=1, schema_version=1)
            env = store._env  # type: ignore[attr-defined]  # the bench reads LMDB's own counters
            info, stat = env.info(), env.stat()
        out["lmdb_write_s"] = round(time.perf_counter() - t0, 2)
        out["lmdb_bytes_per_entity"] = round((info["last_pgno"] + 1) * stat["psize"] / entities, 1)
        with RedisNodes(Path(tmp) / "redis", 1) as nodes:
            client = redis.Redis(port=nodes.ports[0])
            before = client.info("memory")["used_memory"]
            t0 = time.perf_counter()
            config = OnlineStoreSettings(backend="redis", redis_url=nodes.urls[0])
            with open_online_store(config) as store:
                for batch in _batches(entities):
                    store.write("vec@1", batch, ingestion_time_us=1, schema_version=1)
            out["redis_write_s"] = round(time.perf_counter() - t0, 2)
            used = client.info("memory")["used_memory"] - before
            out["redis_bytes_per_entity"] = round(used / entities, 1)
            out["redis_version"] = client.info("server")["redis_version"]
            client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 entities")
    args = parser.parse_args()
    result = measure(2_000 if args.quick else 20_000)
    print(
        f"{result['entities']:,} entities x {DIMS:,} float32: encoded record "
        f"{result['record_bytes']:,} B; LMDB {result['lmdb_bytes_per_entity']:,.0f} B/entity; "
        f"Redis {result['redis_version']} {result['redis_bytes_per_entity']:,.0f} B/entity"
    )
    result["command"] = "python bench/online_bytes.py" + (" --quick" if args.quick else "")
    print(f"wrote {write_results('online_bytes', result, quick=args.quick)}")


if __name__ == "__main__":
    main()

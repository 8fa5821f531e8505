"""The fuzz campaign's store check (tests/support/rpc_fuzz.py) sees every kind of change a
failed call could leave: a committed row, a rolled-back one (no change), an LMDB record, a
file in the service's data directory."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.rpc_fuzz import ServiceStores


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT)")
    return conn


def test_a_committed_row_moves_the_fingerprint_and_the_content(tmp_path: Path) -> None:
    writer = _db(tmp_path / "metadata.db")
    stores = ServiceStores(tmp_path)
    fp, content = stores.fingerprint(), stores.content()
    assert stores.fingerprint() == fp  # reading changes nothing

    writer.execute("BEGIN")
    writer.execute("INSERT INTO jobs VALUES ('a', 'QUEUED')")
    writer.execute("ROLLBACK")
    assert stores.fingerprint() == fp  # a rolled-back write is no change

    writer.execute("INSERT INTO jobs VALUES ('a', 'QUEUED')")
    assert stores.fingerprint() != fp
    changed = stores.content()
    assert [k for k in changed if changed[k] != content[k]] == ["table:jobs"]

    writer.execute("UPDATE jobs SET state = 'QUEUED' WHERE id = 'a'")  # same content
    assert stores.content() == changed
    stores.close()
    writer.close()


def _put(path: Path, value: bytes) -> None:
    """Write as the data service does: from another process (LMDB allows one environment
    handle per path in a process, and the store check holds one)."""
    code = (
        "import lmdb, sys; env = lmdb.open(sys.argv[1], map_size=2**20); "
        "txn = env.begin(write=True); txn.put(b'k', sys.argv[2].encode()); txn.commit()"
    )
    subprocess.run([sys.executable, "-c", code, str(path), value.decode()], check=True)


def test_an_lmdb_record_and_a_new_file_are_seen(tmp_path: Path) -> None:
    _put(tmp_path / "online.lmdb", b"v1")
    stores = ServiceStores(tmp_path)
    fp, content = stores.fingerprint(), stores.content()

    _put(tmp_path / "online.lmdb", b"v2")
    assert stores.fingerprint() != fp
    after = stores.content()
    assert [k for k in after if after[k] != content[k]] == ["lmdb:online.lmdb"]

    fp = stores.fingerprint()
    (tmp_path / "offline-staging").mkdir()
    (tmp_path / "offline-staging" / "part-0.parquet").write_bytes(b"x")
    assert stores.fingerprint() != fp
    assert stores.content()["files"] != after["files"]
    stores.close()

"""The native online reader: a C++ process (native/online_reader) serving
OnlineFeatureService straight from the LMDB online store, beside the data service.

The data service stays the only writer. It mirrors feature group versions into the store
(``OnlineStore.mirror_catalog``) so the reader resolves groups without the metadata DB,
writes the digests of the bearer tokens the reader must accept, starts the binary and stops
it with the service; the binary also exits when its parent dies (kill -9 included). With
``server.tls`` set the reader serves TLS (mTLS with ``client_ca_file``) from the same files as
the service, so a client reaches both endpoints with one ``ClientSettings``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field

from atlas_core.config import AuthSettings, StrictModel, TlsSettings
from atlas_core.errors import ConfigError, Unavailable
from atlas_core.rpc.auth import TokenAuthenticator, scope_allows
from atlas_core.secret_files import read_private
from atlas_data import convert
from atlas_data.feature_groups import FeatureGroup, FeatureGroupCatalog
from atlas_data.online import OnlineStore

log = logging.getLogger("atlas.data.reader")
BINARY_NAME = "atlas-online-reader"
READ_SCOPE = "data:read"


class NativeReaderSettings(StrictModel):
    # None: start it when the online store is LMDB and the binary is installed (`make native`).
    enabled: bool | None = None
    binary: Path | None = None  # default: beside the Python interpreter, then on PATH
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port (logged and exposed as `address`)
    # Keep the store's pages in RAM (mlock) up to this share of physical memory: hosts that
    # page out idle memory would otherwise turn reads of "cold" entities into disk reads.
    # 0 disables; beyond the share (or the memory-lock limit) it logs and reads from disk.
    resident_memory_fraction: float = Field(default=0.5, ge=0, le=0.9)
    # Scheduler slice for the reader's threads (EEVDF, Linux 6.12+; 0: the kernel's default).
    # A short slice lets a woken reader thread preempt whatever runs on a busy CPU instead of
    # waiting out its slice: on a shared host that wait is the read's tail
    # (docs/experiments/online-tail.md). Older kernels ignore it.
    scheduler_slice_us: int = Field(default=0, ge=0, le=100_000)
    start_timeout_seconds: float = 10.0


def find_binary(configured: Path | None = None) -> Path | None:
    if configured is not None:
        return configured if configured.is_file() else None
    beside = Path(sys.executable).parent / BINARY_NAME
    if beside.is_file():
        return beside
    found = shutil.which(BINARY_NAME)
    return Path(found) if found else None


def catalog_entries(versions: Iterable[FeatureGroup]) -> dict[str, bytes]:
    """Mirror entries of some groups' versions: "<name>@<v>" each, "<name>" the latest."""
    entries: dict[str, bytes] = {}
    latest: dict[str, FeatureGroup] = {}
    for group in versions:
        entries[group.store_key] = convert.group_to_pb(group).SerializeToString()
        best = latest.get(group.spec.name)
        if best is None or group.version > best.version:
            latest[group.spec.name] = group
    for name, group in latest.items():
        entries[name] = entries[group.store_key]
    return entries


def mirror_group(online: OnlineStore, groups: FeatureGroupCatalog, name: str) -> None:
    """Bring the mirror of group ``name`` in line with the catalog (absent when deleted)."""
    online.mirror_catalog(catalog_entries(groups.versions(name)), name=name)


def mirror_all(online: OnlineStore, groups: FeatureGroupCatalog) -> None:
    """Rebuild the whole mirror (at start-up: heals a crash between a DB commit and its
    mirror write)."""
    every, _ = groups.list(all_versions=True, limit=2**31)
    online.mirror_catalog(catalog_entries(every), name=None)


class NativeReader:
    """One running reader process."""

    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self._proc = proc
        self.address = address
        self.pid = proc.pid

    @classmethod
    def start(
        cls,
        binary: Path,
        *,
        lmdb_path: Path,
        settings: NativeReaderSettings,
        auth: AuthSettings,
        tls: TlsSettings,
        work_dir: Path,
        max_entities: int,
    ) -> NativeReader:
        """Raises Unavailable when the process does not come up (its stderr is included),
        ConfigError when the TLS key is readable by other users (as the service's server).

        Call it from a long-lived thread: the reader's parent-death signal fires when the
        thread that started it exits.
        """
        cmd = [
            str(binary),
            "--lmdb",
            str(lmdb_path),
            "--address",
            f"{settings.host}:{settings.port}",
            "--max-entities",
            str(max_entities),
        ]
        if settings.resident_memory_fraction:
            ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            cmd += ["--lock-memory", str(int(ram * settings.resident_memory_fraction))]
        if settings.scheduler_slice_us:
            cmd += ["--scheduler-slice-us", str(settings.scheduler_slice_us)]
        if auth.enabled:
            tokens = work_dir / "online-reader.tokens"
            tokens.parent.mkdir(parents=True, exist_ok=True)
            digests = TokenAuthenticator.from_settings(auth).digests()
            fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.writelines(
                    f"{digest} {int(scope_allows(scopes, READ_SCOPE))}\n"
                    for digest, scopes in digests.items()
                )
            cmd += ["--tokens", str(tokens)]
        if tls.enabled:
            assert tls.cert_file is not None and tls.key_file is not None  # what enabled means
            read_private(tls.key_file, "server.tls.key_file")  # refuse an exposed key up front
            cmd += ["--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)]
            if tls.client_ca_file is not None:
                cmd += ["--tls-client-ca", str(tls.client_ca_file)]
        err_path = work_dir / "online-reader.log"
        with open(err_path, "ab") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(proc.stdout.readline()),  # type: ignore[union-attr]  # PIPE
            daemon=True,
        )
        reader.start()
        reader.join(settings.start_timeout_seconds)
        if not line or not line[0].startswith("listening "):
            proc.kill()
            proc.wait()
            detail = err_path.read_text(errors="replace")[-2000:].strip()
            raise Unavailable(
                f"the native online reader ({binary}) did not start: {detail or 'no output'}",
                reason="ONLINE_READER_FAILED",
            )
        address = f"{settings.host}:{int(line[0].split()[1])}"
        log.info(
            "native online reader pid %d serving OnlineFeatureService at %s", proc.pid, address
        )
        return cls(proc, address)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def wanted_binary(settings: NativeReaderSettings, *, backend: str) -> Path | None:
    """The binary to start, None to serve reads from Python only.

    Raises ConfigError when the reader is explicitly enabled but cannot run.
    """
    if settings.enabled is False:
        return None
    binary = find_binary(settings.binary)
    if settings.enabled is None:
        return binary if backend == "lmdb" else None
    if backend != "lmdb":
        raise ConfigError(
            "native_reader.enabled needs online.backend=lmdb (it reads the LMDB store directly)"
        )
    if binary is None:
        raise ConfigError(
            f"native_reader.enabled but {settings.binary or BINARY_NAME} is not "
            "installed: run `make native`"
        )
    return binary

"""Running a service as a real process in tests (for kill -9 and restart scenarios)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from atlas_core.launcher._launcher import wait_serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(
    module: str,
    full_name: str,
    port: int,
    env: Mapping[str, str],
    log_dir: Path,
    *,
    timeout: float = 60,
) -> subprocess.Popen[bytes]:
    """``python -m <module>`` in its own process group with only ``env``'s ATLAS_ settings;
    returns once it reports SERVING (raises with its log tail if it dies first)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    full_env.update(env)
    log_path = log_dir / f"{module}-{time.time_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_serving(f"127.0.0.1:{port}", full_name, pid=proc.pid, log=log_path, timeout=timeout)
    return proc

"""How to run a deep-learning job's workers on several machines with ``torchrun``.

The worker module (``atlas_trainer.deep.worker``) reads the ranks and the rendezvous address
from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so
the same command that the job runs locally runs across machines: start it on every machine
with the job's work directory present on each (a data-parallel job stores its files,
``config.json`` and ``data.npz``, in the object store; the config lists their URIs).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

RDZV_PORT = 29400
NODES = 2  # the command is written for two machines; change --nnodes for more


@dataclass(frozen=True)
class Launch:
    command: str
    config: str


def torchrun_launch(
    job_id: str,
    workers: int,
    work_files: dict[str, str] | None = None,
    host: str = "<first-machine>",
) -> Launch:
    """The command for each machine (``workers`` processes per machine) and its rendezvous
    config (c10d store on the first machine, the job id as the rendezvous id).
    ``work_files`` maps the work directory's files to the object-store URIs holding them (to
    copy into the work directory on every machine)."""
    endpoint = f"{host}:{RDZV_PORT}"
    work_dir = f"atlas-dl-{job_id}"
    config: dict[str, object] = {
        "rdzv_backend": "c10d",
        "rdzv_endpoint": endpoint,
        "rdzv_id": job_id,
        "nnodes": NODES,
        "nproc_per_node": workers,
        "backend": "gloo (nccl where GPUs exist)",
        "work_dir": work_dir,
        "work_dir_files": dict(work_files or {}),
    }
    command = " ".join(
        [
            "torchrun",
            f"--nnodes={NODES}",
            f"--nproc-per-node={workers}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={shlex.quote(job_id)}",
            "-m",
            "atlas_trainer.deep.worker",
            shlex.quote(work_dir),
        ]
    )
    return Launch(command=command, config=json.dumps(config, sort_keys=True))

"""One data-parallel worker: ``python -m atlas_trainer.deep.worker WORK_DIR``.

Ranks and the rendezvous come from the environment, as ``torchrun`` sets it (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so the job's local workers and a multi-machine
``torchrun`` run the same code. WORK_DIR holds ``config.json``, ``data.npz`` and, to resume,
``resume.pt``. Rank 0 writes checkpoints there (the last epoch's is the trained model) and
announces each on stdout as one ``EVENT_PREFIX`` JSON line, which the job process relays
(it owns the object store credentials; workers need none).

A worker ends with ``os._exit`` once its output is flushed, without tearing the process group
down: torch 2.2's ``~ProcessGroupGloo`` (in ``destroy_process_group`` or at interpreter exit)
can deadlock joining a gloo thread that waits for the GIL. Nothing is lost by skipping it: the
last collective (a barrier) is done, the checkpoints are written and closed before they are
announced, and the operating system closes the sockets.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

EVENT_PREFIX = "ATLAS-DL "
# A peer that never arrives (or died during the rendezvous) fails the worker instead of
# hanging it; the job process also kills the whole group when one worker exits.
RENDEZVOUS_TIMEOUT = timedelta(seconds=120)


def _emit(kind: str, **data: Any) -> None:
    print(EVENT_PREFIX + json.dumps({"type": kind, **data}), flush=True)


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    from atlas_trainer.deep.loop import TensorData, train_loop
    from atlas_trainer.deep.params import DeepConfig

    work_dir = Path(argv[1])
    cfg = DeepConfig.from_json(json.loads((work_dir / "config.json").read_text()))
    data = TensorData.load(str(work_dir / "data.npz"))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=RENDEZVOUS_TIMEOUT)
    resume_path = work_dir / "resume.pt"
    resume = resume_path.read_bytes() if resume_path.exists() else None

    def on_checkpoint(blob: bytes, epoch: int) -> None:
        path = work_dir / f"checkpoint-{epoch:04d}.pt"
        path.write_bytes(blob)
        _emit("checkpoint", epoch=epoch, path=str(path))

    _, state = train_loop(
        cfg,
        data,
        resume=resume,
        on_epoch=lambda record: _emit("epoch", record=record),
        on_checkpoint=on_checkpoint,
    )
    dist.barrier()
    if dist.get_rank() == 0:  # the last epoch's checkpoint is the trained model
        _emit("done", epoch=state.epoch, classifier_shards=state.classifier_shards)
    return 0


def _exit(code: int) -> None:
    """Leave without the process group's teardown (see the module docstring)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        status = main(sys.argv)
    except BaseException:  # noqa: BLE001 - reported in the log, then the same exit path
        traceback.print_exc()
        status = 1
    _exit(status)

"""Entry point of the processes of a distributed graph job:

    python -m atlas_graph.training.worker server  --config job.json --server-id N
    python -m atlas_graph.training.worker trainer --config job.json

``job.json`` (written by :mod:`~atlas_graph.training.cluster`) holds the partition config path,
ip_config path, counts, model hyperparameters and output directory. Trainers find their rank in
the torch.distributed environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as DGL's
launch tool and torchrun set it. Rank 0 prints one JSON line per event prefixed with
``EVENT_PREFIX`` on stdout (epochs, checkpoints, the final metrics); the cluster relays them.

When several partitions' servers share one host (the single-machine mode), DGL would give the
kvstore tensors of every partition the same shared-memory name and they would overwrite each
other; with ``shm_tag`` set, each server prefixes its segments with the job's tag and its
partition, and trainers (which DGL attaches to partition 0 on such a host) use partition 0's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

EVENT_PREFIX = "@@atlas-graph "


def emit(kind: str, **data: Any) -> None:
    print(EVENT_PREFIX + json.dumps({"event": kind, **data}), flush=True)


def _tag_shared_memory(tag: str) -> None:
    import dgl.distributed.kvstore as kvstore

    original = kvstore.empty_shared_mem

    def tagged(name: str, *args: Any) -> Any:
        return original(tag + name, *args)

    kvstore.empty_shared_mem = tagged


def run_server(cfg: dict[str, Any], server_id: int) -> None:
    from dgl.distributed import DistGraphServer

    part = server_id // cfg["num_servers"]
    if cfg.get("shm_tag"):
        _tag_shared_memory(f"{cfg['shm_tag']}p{part}-")
    server = DistGraphServer(
        server_id,
        cfg["ip_config"],
        cfg["num_servers"],
        cfg["num_trainers"],
        cfg["part_config"],
        disable_shared_mem=bool(cfg.get("shm_tag")),
        graph_format=["csc", "coo"],
    )
    server.start()


def run_trainer(cfg: dict[str, Any]) -> None:
    import dgl
    import torch

    from atlas_graph.training.link_loop import train_link_prediction
    from atlas_graph.training.loop import train_and_infer

    if cfg.get("shm_tag"):
        _tag_shared_memory(f"{cfg['shm_tag']}p0-")
    os.environ.setdefault("DGL_DIST_MODE", "distributed")
    dgl.distributed.initialize(cfg["ip_config"])
    torch.distributed.init_process_group(backend=cfg["backend"])
    gpb = None
    if cfg.get("shm_tag"):
        gpb = dgl.distributed.load_partition_book(cfg["part_config"], 0)[0]
    graph = dgl.distributed.DistGraph(cfg["graph_name"], gpb=gpb)
    started = time.monotonic()
    if cfg.get("task") == "link_prediction":
        train_link_prediction(cfg, graph, emit)
    else:
        train_and_infer(cfg, graph, emit)
    emit("finished", seconds=time.monotonic() - started)
    torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="atlas_graph.training.worker")
    parser.add_argument("role", choices=["server", "trainer"])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--server-id", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    if args.role == "server":
        run_server(cfg, args.server_id)
    else:
        run_trainer(cfg)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

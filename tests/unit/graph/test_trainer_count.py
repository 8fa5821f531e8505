"""The spec's batch size is global: every trainer count runs an epoch in the same number of
optimizer steps of (about) the same total batch, so it trains the same model."""

from __future__ import annotations

import pytest
import torch

from atlas_graph.training.loop import rank_batch, rank_share


@pytest.mark.parametrize(("train_nodes", "batch"), [(12_000, 1024), (1000, 128), (37, 8)])
def test_steps_per_epoch_do_not_depend_on_the_trainer_count(train_nodes: int, batch: int) -> None:
    mask = torch.zeros(train_nodes + 500, dtype=torch.bool)
    mask[torch.randperm(len(mask))[:train_nodes]] = True
    steps = {}
    for world in (1, 2, 4):
        shares = [rank_share(mask, len(mask), r, world) for r in range(world)]
        assert len({len(s) for s in shares}) == 1  # equal shares: DDP's all-reduces pair up
        assert set(torch.cat(shares).tolist()) == set(torch.nonzero(mask).squeeze(1).tolist())
        per_rank = rank_batch(batch, world)
        assert batch <= per_rank * world < batch + world  # the global batch, split
        steps[world] = -(-len(shares[0]) // per_rank)
    assert max(steps.values()) - min(steps.values()) <= 1, steps

"""word2vec-style pretraining of a text model's word embedding on the job's own training text
(skip-gram with negative sampling, Mikolov et al. 2013, as SageMaker's BlazingText offers):
words that appear in the same contexts start close together, before the classifier trains.

Pairs are (word, neighbour within ``window``) of every training row, both directions; each
pair is contrasted with ``NEGATIVES`` words drawn from the unigram distribution to the 3/4
power. The result initialises the net's embedding (``nn.Embedding`` / ``nn.EmbeddingBag``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

WINDOW = 2
NEGATIVES = 5
BATCH = 1024
LR = 0.01


def word_pairs(ids: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """``[n_pairs, 2]`` (centre, context) ids of every row's words within ``window`` (0 is
    padding and never part of a pair)."""
    pairs = []
    for offset in range(1, window + 1):
        left, right = ids[:, :-offset].ravel(), ids[:, offset:].ravel()
        keep = (left > 0) & (right > 0)
        pairs.append(np.stack([left[keep], right[keep]], axis=1))
        pairs.append(np.stack([right[keep], left[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def pretrain_embedding(
    ids: np.ndarray, vocab_size: int, dim: int, *, epochs: int, seed: int
) -> torch.Tensor:
    """``[vocab_size, dim]`` word vectors learned from the id matrix ``ids`` (row 0: padding,
    kept at zero)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    words = nn.Embedding(vocab_size, dim, padding_idx=0)
    contexts = nn.Embedding(vocab_size, dim, padding_idx=0)
    nn.init.uniform_(words.weight, -0.5 / dim, 0.5 / dim)
    nn.init.zeros_(contexts.weight)
    with torch.no_grad():
        words.weight[0].zero_()
    pairs = torch.from_numpy(word_pairs(ids))
    counts = np.bincount(ids.ravel(), minlength=vocab_size).astype(np.float64)
    counts[0] = 0.0
    noise = torch.from_numpy(counts**0.75)
    if not len(pairs) or float(noise.sum()) == 0.0:
        return words.weight.detach().clone()
    optimizer = torch.optim.Adam([*words.parameters(), *contexts.parameters()], lr=LR)
    for _ in range(epochs):
        order = torch.randperm(len(pairs), generator=generator)
        for start in range(0, len(pairs), BATCH):
            batch = pairs[order[start : start + BATCH]]
            centre = words(batch[:, 0])  # [b, dim]
            positive = contexts(batch[:, 1])
            negative = contexts(
                torch.multinomial(noise, len(batch) * NEGATIVES, True, generator=generator).view(
                    len(batch), NEGATIVES
                )
            )  # [b, k, dim]
            score = (centre * positive).sum(dim=1)
            negative_score = torch.bmm(negative, centre.unsqueeze(2)).squeeze(2)
            loss = -(
                nn.functional.logsigmoid(score).mean()
                + nn.functional.logsigmoid(-negative_score).sum(dim=1).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return words.weight.detach().clone()

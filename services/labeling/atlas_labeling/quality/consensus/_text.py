"""Consensus for transcriptions (OCR regions)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence


def normalize_text(text: str) -> str:
    """NFKC, casefold, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1), by code point."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(hypothesis: str, reference: str) -> float:
    """Levenshtein(hypothesis, reference) / len(reference); an empty reference gives 0 or 1."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return levenshtein(hypothesis, reference) / len(reference)


def merge_ocr_text(texts: Sequence[str]) -> str:
    """One transcription from several annotators' transcriptions of the same region.

    If more than half of the texts are equal after `normalize_text`, that group wins;
    otherwise the medoid wins: the text whose summed character error rate against every
    other text (each taken as the reference) is lowest. Comparisons use the normalised
    forms, but the result is an original text (its case kept, whitespace runs collapsed): the
    most frequent original spelling within the winning group, ties going to the earliest.

    Raises:
        ValueError: `texts` is empty.
    """
    if not texts:
        raise ValueError("texts is empty")
    normalised = [normalize_text(t) for t in texts]
    counts = Counter(normalised)
    top, top_count = counts.most_common(1)[0]
    if top_count * 2 > len(texts):
        winner = top
    else:
        distinct = list(dict.fromkeys(normalised))  # first-seen order breaks ties
        cost = {
            cand: sum(
                counts[other] * character_error_rate(cand, other)
                for other in distinct
                if other != cand
            )
            for cand in distinct
        }
        winner = min(distinct, key=lambda cand: cost[cand])
    spellings = Counter(" ".join(t.split()) for t, n in zip(texts, normalised) if n == winner)
    best = max(spellings.values())
    return next(s for s in spellings if spellings[s] == best)

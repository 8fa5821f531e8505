"""A free-text column's features (TF-IDF of the fitted vocabularies, length and word
statistics) for serving's matrix path: what ``ColumnRoleFeatures`` computes through
``TfidfVectorizer.transform`` and pandas string methods, done per value in plain Python
(the vectorizer's own analyzer, a dict lookup per term) and NumPy, without their per-call
validation and frames (milliseconds for a one-row request). The TF-IDF arithmetic runs in
the vectorizer's dtype and its last step is scikit-learn's own row normalisation, so the
output is the vectorizer's to the bit; callers still verify it against the model."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACE = re.compile(r"\s")
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"\d")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def tfidf_fn(vectorizer: Any) -> Callable[[list[str]], np.ndarray]:
    """``vectorizer.transform(texts).toarray()`` as float64 for a fitted
    ``TfidfVectorizer`` (sublinear or raw term frequencies, l2 or no norm, with idf)."""
    from scipy import sparse
    from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

    analyze = vectorizer.build_analyzer()
    vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
    width = len(vocabulary)
    dtype = np.dtype(vectorizer.dtype)
    tfidf = vectorizer._tfidf  # noqa: SLF001 - the fitted transformer: its idf and options
    idf = np.asarray(tfidf.idf_, dtype=dtype) if tfidf.use_idf else None
    if tfidf.norm not in ("l2", None) or vectorizer.binary:
        raise ValueError("only l2 or no norm, counted terms")

    def transform(texts: list[str]) -> np.ndarray:
        indices: list[int] = []
        counts: list[int] = []
        indptr = [0]
        for text in texts:
            found: dict[int, int] = {}
            for term in analyze(text):
                j = vocabulary.get(term)
                if j is not None:
                    found[j] = found.get(j, 0) + 1
            for j in sorted(found):  # CSR with sorted indices, as the vectorizer's
                indices.append(j)
                counts.append(found[j])
            indptr.append(len(indices))
        data = np.asarray(counts, dtype=dtype)
        cols = np.asarray(indices, dtype=np.int32)
        if tfidf.sublinear_tf:
            np.log(data, data)
            data += 1.0
        if idf is not None:
            data *= idf[cols]
        X = sparse.csr_matrix(
            (data, cols, np.asarray(indptr, dtype=np.int32)), shape=(len(texts), width)
        )
        if tfidf.norm == "l2":
            inplace_csr_row_normalize_l2(X)
        return X.toarray().astype(np.float64)

    return transform


def statistics_fn(names: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """The text statistics ``names`` (chars, words, mean_word_len, upper_frac, digit_frac,
    punct_frac) of raw values, NaN for a missing one, as ``_text_statistics`` gives them."""

    def one(v: Any) -> list[float]:
        if _missing(v):
            return [np.nan] * len(names)
        text = str(v)
        chars = float(len(text))
        words = float(len(text.split()))
        safe = max(chars, 1.0)
        stats = {
            "chars": chars,
            "words": words,
            "mean_word_len": (chars - len(_SPACE.findall(text))) / max(words, 1.0),
            "upper_frac": len(_UPPER.findall(text)) / safe,
            "digit_frac": len(_DIGIT.findall(text)) / safe,
            "punct_frac": len(_PUNCTUATION.findall(text)) / safe,
        }
        return [stats[n] for n in names]

    def transform(values: np.ndarray) -> np.ndarray:
        rows = [one(v) for v in values.tolist()]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))

    return transform


def text_fn(vectorizers: Sequence[Any], stats: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """A text column's features (``[n, k]``, float64) from its raw values: each vectorizer's
    TF-IDF block, then the statistics, in ``ColumnRoleFeatures``'s order."""
    tfidf = [tfidf_fn(v) for v in vectorizers]
    statistics = statistics_fn(stats) if stats else None

    def transform(values: np.ndarray) -> np.ndarray:
        texts = ["" if _missing(v) else str(v) for v in values.tolist()]
        blocks = [f(texts) for f in tfidf]
        if statistics is not None:
            blocks.append(statistics(values))
        return np.hstack(blocks) if blocks else np.zeros((len(texts), 0))

    return transform

"""BM25 over a bounded pool of candidate memories, for queries whose words are common.

A full-text index ranks every match with statistics of the whole index; when a scope has
thousands of matches, that work grows with the store. Here the candidates are the most
recent matches of each term, and each term's weight comes from a window of recent memories
in which every term's matches are known: the cost follows the pool, not the history.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

K1 = 1.2
B = 0.75
# Column weights against content, for both rankers (FTS5's bm25() and the pool's):
LABEL_WEIGHT = 0.4  # tags and event type
CONTEXT_WEIGHT = 0.5  # the memory before it in its session; LoCoMo recall is flat 0.3-0.7
# Punctuation and other spacing separate words, like a space ("(refunds", "said:\nrefund").
_SPACES = str.maketrans({c: " " for c in string.punctuation + "\t\n\r\f\v"})
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ies", "es", "ed", "ly", "s")


def stem(word: str) -> str:
    """A light suffix stem, so "refunds" and "refunded" count as "refund"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True, slots=True)
class Candidate:
    """A memory in the pool: its words (content) and labels (tags, event type)."""

    content: str
    labels: str
    context: str = ""  # the memory before it in its session


def term_weights(terms: Sequence[str], window: int, matches: dict[str, int]) -> dict[str, float]:
    """BM25 inverse document frequency of each term, from how many of ``window`` memories
    match it."""
    n = max(window, 1)
    weights = {}
    for term in terms:
        df = min(matches.get(term, 0), n)
        weights[stem(term)] = max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
    return weights


def length(c: Candidate) -> int:
    """A memory's length for BM25: about its number of words, in every column."""
    return sum(len(text.translate(_SPACES).split()) for text in (c.content, c.labels, c.context))


def frequencies(candidate: Candidate, stems: Iterable[str]) -> dict[str, float]:
    """How often each stem occurs in a candidate, its columns weighed.

    A word counts for a term when it begins with the term's stem ("refund" counts
    "refunds" and "refunded"); words are counted with string methods, in a few
    microseconds per memory.
    """
    content, labels, context = (
        " " + text.lower().translate(_SPACES)
        for text in (candidate.content, candidate.labels, candidate.context)
    )
    return {
        t: content.count(" " + t)
        + LABEL_WEIGHT * labels.count(" " + t)
        + CONTEXT_WEIGHT * context.count(" " + t)
        for t in stems
    }


def bm25(candidates: Sequence[Candidate], weights: dict[str, float]) -> list[float]:
    """The BM25 score of each candidate (higher is better), terms counted by
    ``frequencies``."""
    counted = [frequencies(c, weights) for c in candidates]
    return scores(counted, [length(c) for c in candidates], weights)


def scores(
    frequencies: Sequence[Mapping[str, float]], lengths: Sequence[int], weights: Mapping[str, float]
) -> list[float]:
    """BM25 of documents from each one's (column-weighted) term frequencies and length,
    against the average length of these documents (higher is better)."""
    average = sum(lengths) / max(len(lengths), 1) or 1.0
    out = []
    for tfs, size in zip(frequencies, lengths, strict=True):
        norm = K1 * (1 - B + B * size / average)
        out.append(sum(weights[t] * tf * (K1 + 1) / (tf + norm) for t, tf in tfs.items() if tf))
    return out

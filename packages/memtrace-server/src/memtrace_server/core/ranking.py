"""BM25 over a bounded pool of candidate memories, for queries whose words are common.

A full-text index ranks every match with statistics of the whole index; when a scope has
thousands of matches, that work grows with the store. Here the candidates are the most
recent matches of each term, and each term's weight comes from a window of recent memories
in which every term's matches are known: the cost follows the pool, not the history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

K1 = 1.2
B = 0.75
# Column weights against content, for both rankers (FTS5's bm25() and the pool's):
LABEL_WEIGHT = 0.4  # tags and event type
CONTEXT_WEIGHT = 0.5  # the memory before it in its session; LoCoMo recall is flat 0.3-0.7
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
        weights[stem(term)] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return weights


def bm25(candidates: Sequence[Candidate], weights: dict[str, float]) -> list[float]:
    """The BM25 score of each candidate (higher is better).

    A word counts for a term when it begins with the term's stem ("refund" counts
    "refunds" and "refunded"); a text's length is its number of words. Both are counted
    with string methods: a pool is ranked in a few microseconds per memory.
    """
    counted = []
    for c in candidates:
        content, labels, context = (" " + text.lower() for text in (c.content, c.labels, c.context))
        tfs = {
            t: content.count(" " + t)
            + LABEL_WEIGHT * labels.count(" " + t)
            + CONTEXT_WEIGHT * context.count(" " + t)
            for t in weights
        }
        counted.append((tfs, content.count(" ") + labels.count(" ") + context.count(" ")))
    average = sum(length for _, length in counted) / max(len(counted), 1) or 1.0
    scores = []
    for tfs, length in counted:
        norm = K1 * (1 - B + B * length / average)
        scores.append(sum(weights[t] * tf * (K1 + 1) / (tf + norm) for t, tf in tfs.items() if tf))
    return scores

"""BM25 over a bounded pool of candidate memories, for queries whose words are common.

A full-text index ranks every match with statistics of the whole index; when a scope has
thousands of matches, that work grows with the store. Here the candidates are the most
recent matches of each term, and each term's weight comes from a window of recent memories
in which every term's matches are known: the cost follows the pool, not the history.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

K1 = 1.2
B = 0.75
# Column weights against content, for both rankers (FTS5's bm25() and the pool's):
LABEL_WEIGHT = 0.4  # tags and event type
CONTEXT_WEIGHT = 0.5  # the memory before it in its session; LoCoMo recall is flat 0.3-0.7
# Punctuation and other spacing separate words, like a space ("(refunds", "said:\nrefund").
_SEPARATORS = (string.punctuation + string.whitespace).encode()
_SPACES = bytes.maketrans(_SEPARATORS, b" " * len(_SEPARATORS))
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ies", "es", "ed", "ly", "s")
# A stem this long or longer counts every word it begins ("refund": "refundable"); a shorter
# one only itself and itself with one of the suffixes ("car": "cars", not "career").
PREFIX_STEM = 4
_ENDINGS = frozenset([b"", *(s.encode() for s in _SUFFIXES)])
_WHOLE_WORD = b"(?=(?:" + b"|".join(s.encode() for s in _SUFFIXES) + b")?(?: |$))"


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


def counted(
    candidates: Sequence[Candidate], stems: Iterable[str]
) -> tuple[list[dict[str, float]], list[int]]:
    """How often each stem occurs in each candidate, its columns weighed, and the
    candidate's length in words.

    A word counts for a term when it begins with the term's stem ("refund" counts
    "refunds" and "refunded"), or, for a stem shorter than ``PREFIX_STEM``, when it is the
    stem with at most one of ``stem``'s suffixes ("car" counts "cars", not "career"). One
    scan of each text finds the longest stem at each word's start, and the word counts
    for each stem that stem begins with, by that stem's rule: the cost follows the text
    more than the number of terms (a pool's candidates grow with its terms too, so
    counting term by term grew with their square).
    """
    keys = list(dict.fromkeys(stems))
    # Longest first: where two stems start a word, the longer one is found, and the shorter
    # is in its list. A short stem's own pattern ends at the word's end (``_WHOLE_WORD``),
    # so its prefix matches cost no Python. No stems: a pattern that never matches.
    ordered = sorted(keys, key=len, reverse=True)
    alternatives = b"|".join(_alternative(k) for k in ordered) or b"(?!)"
    pattern = re.compile(b" (" + alternatives + b")([^ ]*)")
    # The stems a found stem begins with, each with where a word it counts may end (None:
    # anywhere; a shorter stem counts the word only when the rest is one of the endings).
    credits = {
        k.encode(): [
            (t, None if t == k or len(t) >= PREFIX_STEM else len(t.encode()))
            for t in keys
            if k.startswith(t)
        ]
        for k in keys
    }
    empty = dict.fromkeys(keys, 0.0)
    frequencies, lengths = [], []
    for c in candidates:
        tfs = empty.copy()
        size = 0
        for text, weight in (
            (c.content, 1.0),
            (c.labels, LABEL_WEIGHT),
            (c.context, CONTEXT_WEIGHT),
        ):
            if not text:
                continue
            spaced = b" " + text.lower().encode().translate(_SPACES)
            for found, rest in pattern.findall(spaced):
                for t, cut in credits[found]:
                    if cut is None or (found + rest)[cut:] in _ENDINGS:
                        tfs[t] += weight
            size += len(spaced.split())
        frequencies.append(tfs)
        lengths.append(size)
    return frequencies, lengths


def _alternative(stem: str) -> bytes:
    """The pattern of the words a stem counts (see ``counted``), after a space."""
    escaped = re.escape(stem.encode())
    return escaped if len(stem) >= PREFIX_STEM else escaped + _WHOLE_WORD


def bm25(candidates: Sequence[Candidate], weights: dict[str, float]) -> list[float]:
    """The BM25 score of each candidate (higher is better), terms counted by ``counted``."""
    return scores(*counted(candidates, weights), weights)


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

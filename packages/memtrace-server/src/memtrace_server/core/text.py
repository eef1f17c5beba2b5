"""Query text for ranked search: terms, and the tenant scope of the full-text index's words."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

MAX_TERMS = 32
# Hex digits written with digits and consonants only: a stemmer that measures a word by its
# vowels (FTS5's porter) measures a prefixed word as it measures the word.
_CONSONANT_HEX = str.maketrans("abcdef", "bcdfgh")
# ASCII characters that are not letters or digits (as for ``_WORD``), made spaces.
_ASCII_SEPARATORS = bytes(c for c in range(128) if not chr(c).isalnum())
_ASCII_SPACES = bytes.maketrans(_ASCII_SEPARATORS, b" " * len(_ASCII_SEPARATORS))
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "did",
        "does",
        "what's",
    ]
)


def query_terms(text: str) -> list[str]:
    """The distinct lowercase words of ``text`` worth searching for (stop words left out)."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    seen: dict[str, None] = {}
    for found in _WORD.findall(text):  # split as ``org_words`` splits, then folded
        word = found.lower()
        if word not in STOP_WORDS and word not in seen:
            seen[word] = None
    return list(seen)[:MAX_TERMS]


def org_scope(org_id: str) -> str:
    """One index token that stands for an org (its id in hex: letters and digits only)."""
    return "o" + org_id.encode().hex()


def agent_scope(org_id: str, agent_id: str) -> str:
    """One index token that stands for an agent of an org."""
    return "a" + f"{org_id}|{agent_id}".encode().hex()


@functools.lru_cache(maxsize=4096)
def term_prefix(org_id: str) -> str:
    """What each word of an org's memories is prefixed with in the full-text index.

    Sixteen characters of a digest of the org id (no vowels), then ``x``: an org's words
    are terms of their own, so a term's posting list, and the statistics ``bm25()`` reads
    from it, hold that org's memories only. The index is contentless and deleting from
    it repeats the indexed text, so this must never change for a stored org.
    """
    digest = hashlib.blake2b(org_id.encode(), digest_size=8).hexdigest()
    return digest.translate(_CONSONANT_HEX) + "x"


def org_words(prefix: str, text: str) -> str:
    """``text`` as the full-text index takes it: its words, each behind ``prefix``.

    Words are split here as ``query_terms`` splits a query (the index's tokenizer folds
    case and diacritics and stems each prefixed word the same way on both sides).
    """
    if text.isascii():  # the same words, split by bytes methods: 5 times quicker
        words = text.encode().translate(_ASCII_SPACES).split()
        if not words:
            return ""
        head = prefix.encode()
        return (head + (b" " + head).join(words)).decode()
    return " ".join(prefix + word for word in _WORD.findall(unicodedata.normalize("NFC", text)))

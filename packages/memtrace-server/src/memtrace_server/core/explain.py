"""Why a search returned a memory: the parts its score is made of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Explanation:
    """The components of one search result's score.

    ``final_score = relevance x importance_factor x recency_factor``, where relevance is
    the text (BM25) score, or in hybrid mode the sum of the standardised text score and
    the standardised semantic similarity. Without a query nothing is scored: results come
    in time order and the scores are None.
    """

    text_score: float | None = None
    semantic_similarity: float | None = None  # hybrid only; None if not embedded yet
    relevance: float | None = None
    recency_factor: float = 1.0
    importance_factor: float = 1.0
    final_score: float | None = None
    hybrid: bool = False


def recency_factor(age_ns: int, half_life_ns: int | None) -> float:
    """1 for no half-life; else halved per ``half_life_ns`` of age."""
    if not half_life_ns:
        return 1.0
    return float(0.5 ** (max(age_ns, 0) / half_life_ns))


def importance_factor(importance: float, weight: float) -> float:
    """``1 + weight x importance``."""
    return 1.0 + weight * importance


def explanation_to_wire(e: Explanation) -> dict[str, Any]:
    """An explanation as JSON: ``semantic_similarity`` only in hybrid mode."""
    out: dict[str, Any] = {"text_score": _rounded(e.text_score)}
    if e.hybrid:
        out["semantic_similarity"] = _rounded(e.semantic_similarity)
    out["relevance"] = _rounded(e.relevance)
    out["recency_factor"] = _rounded(e.recency_factor)
    out["importance_factor"] = _rounded(e.importance_factor)
    out["final_score"] = _rounded(e.final_score)
    return out


def _rounded(value: float | None) -> float | None:
    # Significant digits, not decimal places: BM25 scores can be far below 1e-6.
    return None if value is None else float(f"{value:.7g}")

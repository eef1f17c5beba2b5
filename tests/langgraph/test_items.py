"""The pure parts of ``langgraph-memtrace``: memory keys, contents, TTLs and filter splits."""

from __future__ import annotations

import pytest

from langgraph_memtrace.filters import split_filter
from langgraph_memtrace.items import item_content, memory_key, ttl_argument


def test_memory_keys_are_readable_escaped_and_bounded() -> None:
    assert memory_key(("users", "alice"), "prefs") == "users.alice/prefs"
    assert memory_key(("a/b",), "c") == "a%2Fb/c" != memory_key(("a",), "b/c") == "a/b/c"
    assert memory_key(("100%",), "x\ny") == "100%25/x%0Ay"
    short = memory_key(("n",), "k" * 197)
    assert len(short) == 199 and "#" not in short
    hashed = memory_key(("n",), "k" * 198)
    assert len(hashed) == 200 and hashed[167] == "#"
    assert hashed != memory_key(("n",), "k" * 199)
    assert memory_key(("n",), "k" * 198 + "1") != memory_key(("n",), "k" * 198 + "2")


def test_content_is_the_text_or_a_rendering() -> None:
    assert item_content({"text": "Likes tea", "x": 1}) == "Likes tea"
    assert item_content({"content": "Likes coffee"}) == "Likes coffee"
    assert (
        item_content({"text": "  ", "n": 2, "s": "ü", "l": [1]}) == "text:   ; n: 2; s: ü; l: [1]"
    )
    assert item_content({}) == "{}"


def test_ttl_minutes_become_whole_seconds() -> None:
    assert ttl_argument(None) is None
    assert ttl_argument(1) == "60s"
    assert ttl_argument(0.001) == "1s"
    assert ttl_argument(365 * 24 * 60) == f"{365 * 24 * 3600}s"
    for bad in (0, -1, 365 * 24 * 60 + 1):
        with pytest.raises(ValueError, match="365 days"):
            ttl_argument(bad)


def test_filters_split_into_server_equalities_and_local_conditions() -> None:
    split = split_filter(
        {"a": "x", "b": {"$eq": 2}, "c": {"$gt": 1}, "d": None, "e": [1], "f": True}, room=16
    )
    assert split.server == {"lgv_a": "x", "lgv_b": 2, "lgv_f": True}
    assert split.local == {"c": {"$gt": 1}, "d": None, "e": [1]}
    assert split.matches({"c": 2, "e": [1]})
    assert not split.matches({"c": 1, "e": [1]}) and not split.matches({"c": 2, "e": [1], "d": 0})
    crowded = split_filter({f"k{n}": n for n in range(5)}, room=3)
    assert len(crowded.server) == 3 and crowded.local == {"k3": 3, "k4": 4}
    with pytest.raises(ValueError, match=r"'\$regex'"):
        split_filter({"a": {"nested": {"$regex": "x"}}}, room=16)

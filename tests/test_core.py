"""Pure functions: dedup keys, time grammar and formatting, context rendering."""

from __future__ import annotations

import pytest

from memtrace_server.core.context import estimate_tokens, render_session_context
from memtrace_server.core.dedup import dedup_key
from memtrace_server.core.errors import BadRequest
from memtrace_server.core.ids import API_KEY_RE, new_api_key, new_memory_id
from memtrace_server.core.records import MemoryBatch, MemoryRecord
from memtrace_server.core.rules import fresh_memories
from memtrace_server.core.timefmt import (
    format_rfc3339,
    parse_since,
    parse_timestamp,
    parse_until,
)

NOW = 1_770_000_000 * 10**9
H = 3600 * 10**9


@pytest.mark.parametrize(
    ("agent", "event", "content", "expected"),
    [
        ("agent_1", "general", "User prefers dark mode", "e81f1de3b743bacd47421867ad0574e4"),
        ("agent_1", "decision", "Use PostgreSQL", "69b3210537377d2095698230eebd4be7"),
    ],
)
def test_dedup_key_matches_reference_vectors(
    agent: str, event: str, content: str, expected: str
) -> None:
    assert dedup_key(agent, event, content) == expected


def test_dedup_key_uses_first_200_bytes_not_characters() -> None:
    base = "é" * 100  # 200 bytes
    assert dedup_key("a", "general", base) == dedup_key("a", "general", base + "tail")
    assert dedup_key("a", "general", "x" * 199) != dedup_key("a", "general", "x" * 199 + "y")


def test_api_key_format() -> None:
    key = new_api_key()
    assert API_KEY_RE.match(key), key
    assert len(key) == 48


def test_memory_ids_sort_by_time() -> None:
    ids = [new_memory_id(t) for t in (NOW, NOW + 1, NOW + H)]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_770_494_100 * 10**9, "2026-02-07T19:55:00Z"),
        (1_770_494_100 * 10**9 + 500_000_000, "2026-02-07T19:55:00.5Z"),
        (1_770_494_100 * 10**9 + 123_456_789, "2026-02-07T19:55:00.123456789Z"),
    ],
)
def test_format_rfc3339_trims_like_go(ns: int, text: str) -> None:
    assert format_rfc3339(ns) == text
    assert parse_timestamp(text) == ns


@pytest.mark.parametrize(
    ("value", "span"),
    [
        ("30s", 30),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("365d", 365 * 86400),
        ("8760h", 365 * 86400),
    ],
)
def test_relative_windows(value: str, span: int) -> None:
    assert parse_since("since", value, NOW) == NOW - span * 10**9


@pytest.mark.parametrize(
    "value",
    ["0h", "366d", "53w", "8761h", "2x", "-1h", "1.5h", " 1h", "h", "yesterday", "2026-13-01"],
)
def test_bad_windows_are_400(value: str) -> None:
    with pytest.raises(BadRequest):
        parse_since("since", value, NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-07", 1_770_422_400 * 10**9),
        ("2026-02-07 20:00:00", 1_770_494_400 * 10**9),
        ("2026-02-07T20:00:00Z", 1_770_494_400 * 10**9),
        ("2026-02-07T21:30:00+01:30", 1_770_494_400 * 10**9),
        ("2026-02-07T20:00:00.25Z", 1_770_494_400 * 10**9 + 250_000_000),
    ],
)
def test_absolute_times(value: str, expected: int) -> None:
    assert parse_since("since", value, NOW) == expected


def test_until_now_and_relative() -> None:
    assert parse_until("now", NOW) is None
    assert parse_until("", NOW) is None
    assert parse_until("1h", NOW) == NOW - H


def _mem(i: int, memory_type: str, event_type: str, content: str, ns: int) -> MemoryRecord:
    return MemoryRecord(
        id=f"m{i}",
        org_id="o",
        agent_id="a",
        content=content,
        time_ns=ns,
        memory_type=memory_type,
        event_type=event_type,
    )


T0 = 1_770_494_100 * 10**9  # 2026-02-07T19:55:00Z


def _at(text: str) -> int:
    ns = parse_timestamp(text)
    assert ns is not None
    return ns


def test_context_matches_reference_worked_example() -> None:
    rows = [  # newest first
        _mem(1, "decision", "decision", "Skip pagination", _at("2026-02-07T20:15:00Z")),
        _mem(
            2,
            "episodic",
            "api_call",
            "Called the pricing API and got 3 items",
            _at("2026-02-07T20:14:30.5Z"),
        ),
        _mem(3, "session", "error", "Rate limited, backing off", _at("2026-02-07T20:13:00Z")),
    ]
    text, count = render_session_context("sess_1a2b", rows)
    assert count == 3
    assert text == (
        "## Session Context (sess_1a2b)\n\n"
        "### Recent Actions (1)\n- [2026-02-07T20:14:30.5Z] api_call: Called the pricing API and got 3 items\n\n"
        "### Decisions Made (1)\n- [2026-02-07T20:15:00Z] decision: Skip pagination\n\n"
        "### Errors (1)\n- [2026-02-07T20:13:00Z] error: Rate limited, backing off\n\n"
    )


def test_context_other_section_and_empty() -> None:
    assert render_session_context("s", []) == ("## Session Context (s)\n\n", 0)
    rows = [
        _mem(1, "entity", "fact", "Alex likes tea", T0),
        _mem(2, "episodic", "error", "boom", T0),
    ]
    text, _ = render_session_context("s", rows)
    # episodic errors stay under Recent Actions, as in the reference; Other has no trailing blank line
    assert text == (
        "## Session Context (s)\n\n### Recent Actions (1)\n- [2026-02-07T19:55:00Z] error: boom\n\n"
        "### Other (1)\n- [2026-02-07T19:55:00Z] fact: Alex likes tea\n"
    )


def test_context_hint_cuts_at_80_bytes_like_go() -> None:
    content = "a" * 79 + "€uro"  # the euro sign straddles byte 80
    text, _ = render_session_context("s", [_mem(1, "episodic", "general", content, T0)])
    assert "a" * 79 + "\ufffd..." in text
    content = "b" * 78 + "€"  # 81 bytes: two of the euro's three bytes survive
    text, _ = render_session_context("s", [_mem(1, "episodic", "general", content, T0)])
    assert "b" * 78 + "\ufffd\ufffd..." in text
    exact = "c" * 80
    text, _ = render_session_context("s", [_mem(1, "episodic", "general", exact, T0)])
    assert f"general: {exact}\n" in text


def test_context_budget_drops_oldest_first() -> None:
    rows = [
        _mem(i, "episodic", "general", f"memory number {i} " + "x" * 40, T0 - i * 10**9)
        for i in range(20)
    ]
    full, _ = render_session_context("s", rows)
    budget = estimate_tokens(full) // 2
    text, count = render_session_context("s", rows, budget)
    assert estimate_tokens(text) <= budget
    assert 0 < count < 20
    assert f"### Recent Actions ({count})" in text
    assert "memory number 0 " in text  # the newest survives
    assert f"memory number {count} " not in text  # the oldest went first
    one_more, _ = render_session_context("s", rows[: count + 1])
    assert estimate_tokens(one_more) > budget  # as many as fit, not fewer


def test_context_budget_smaller_than_header() -> None:
    rows = [_mem(1, "episodic", "general", "x", T0)]
    assert render_session_context("s", rows, 1) == ("## Session Context (s)\n\n", 0)


def test_pool_bm25_weighs_rare_terms_and_counts_word_forms() -> None:
    from memtrace_server.core.ranking import Candidate, bm25, stem, term_weights

    assert stem("refunds") == stem("refunded") == "refund"
    weights = term_weights(["customer", "orchids"], 100, {"customer": 90, "orchids": 3})
    assert weights["orchid"] > 5 * weights["customer"]
    scores = bm25(
        [
            Candidate("the customer called us", ""),
            Candidate("an orchid for the customer", ""),
            Candidate("an orchid for the visitor", ""),
            Candidate("some of my orchids here", ""),  # a plural counts too
            Candidate("nothing about flowers here", "orchid"),  # a tag counts less
            Candidate("unrelated words only here", ""),
        ],
        weights,
    )
    assert scores[1] > scores[2] == scores[3] > scores[4] > scores[0] > scores[5] == 0.0


def test_duplicates_across_calls_are_judged_as_if_the_calls_ran_in_turn() -> None:
    NS = 10**9
    window, now = 60 * NS, 1000 * NS

    def m(n: int, key: str, at: int, expires: int | None = None) -> MemoryRecord:
        return MemoryRecord(
            f"mem_{n}", "o", "a", "c", at * NS, dedup_key=key, expires_at_ns=expires
        )

    calls = [
        MemoryBatch("o", (m(1, "k", 990), m(2, "k", 995)), window, now),  # the same call
        MemoryBatch("o", (m(3, "k", 999),), window, now + NS),  # an earlier call's memory
        MemoryBatch("o", (m(4, "gone", 990, expires=now + 2 * NS),), None, now),  # no window
        MemoryBatch("o", (m(5, "gone", 991),), window, now + 2 * NS),  # that one expired
        MemoryBatch("o", (m(6, "s", 900), m(7, "", 900)), window, now),  # near a stored one
        MemoryBatch("o", (m(8, "s", 700),), window, now),  # outside its window
    ]
    stored = {"s": [(880 * NS, None)]}
    assert fresh_memories(calls, stored) == [
        [True, False],
        [False],
        [True],
        [True],
        [False, True],
        [True],
    ]

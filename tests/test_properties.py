"""Property tests: time grammar, dedup keys, context under a budget, literal round trips."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from memtrace_server.core.context import estimate_tokens, render_session_context
from memtrace_server.core.dedup import dedup_key
from memtrace_server.core.errors import BadRequest
from memtrace_server.core.records import MEMORY_TYPES, MemoryRecord
from memtrace_server.core.timefmt import format_rfc3339, parse_since, parse_timestamp

NOW = 1_790_000_000 * 10**9
UTF8 = st.characters(codec="utf-8")  # what a request can carry: no lone surrogates
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Derandomized so CI is repeatable; raise max_examples or drop derandomize locally to explore.
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


@SETTINGS
@given(n=st.integers(min_value=0, max_value=10**9), unit=st.sampled_from(list(UNIT)))
def test_relative_windows_are_exact_or_refused(n: int, unit: str) -> None:
    span = n * UNIT[unit]
    if 1 <= span <= 365 * 86400:
        assert parse_since("since", f"{n}{unit}", NOW) == NOW - span * 10**9
    else:
        with pytest.raises(BadRequest):
            parse_since("since", f"{n}{unit}", NOW)


@SETTINGS
@given(ns=st.integers(min_value=0, max_value=253402300799 * 10**9 + 999_999_999))
def test_timestamps_round_trip_to_the_nanosecond(ns: int) -> None:
    assert parse_timestamp(format_rfc3339(ns)) == ns


@SETTINGS
@given(text=st.text(max_size=40))
def test_arbitrary_since_is_a_bound_or_a_400(text: str) -> None:
    try:
        bound = parse_since("since", text, NOW)
    except BadRequest as exc:
        assert "since" in exc.message or "window" in exc.message
    else:
        assert bound is None or isinstance(bound, int)


@SETTINGS
@given(
    agent=st.text(UTF8, min_size=1, max_size=20),
    event=st.text(UTF8, min_size=1, max_size=20),
    content=st.text(UTF8, max_size=400),
)
def test_dedup_key_shape_and_prefix(agent: str, event: str, content: str) -> None:
    key = dedup_key(agent, event, content)
    assert len(key) == 32 and set(key) <= set(string.hexdigits.lower())
    if len(content.encode()) >= 200:  # only the first 200 bytes count
        assert key == dedup_key(agent, event, content + "anything after")
    else:
        assert key != dedup_key(agent, event, content + "x")
    assert key != dedup_key(agent + "2", event, content)


memories = st.lists(
    st.builds(
        lambda i, t, e, c: MemoryRecord(
            id=f"m{i}",
            org_id="o",
            agent_id="a",
            content=c,
            time_ns=NOW - i * 10**9,
            memory_type=t,
            event_type=e,
        ),
        st.integers(0, 10**6),
        st.sampled_from(MEMORY_TYPES),
        st.sampled_from(["general", "error", "note"]),
        st.text(UTF8, min_size=1, max_size=300),
    ),
    max_size=60,
)


@SETTINGS
@given(rows=memories, budget=st.integers(min_value=1, max_value=3000))
def test_context_fits_any_budget_and_keeps_the_newest(
    rows: list[MemoryRecord], budget: int
) -> None:
    text, count = render_session_context("sess_x", rows, budget)
    header = "## Session Context (sess_x)\n\n"
    assert text.startswith(header)
    assert estimate_tokens(text) <= budget or text == header
    assert 0 <= count <= len(rows)
    if count:
        assert (
            text == render_session_context("sess_x", rows[:count])[0]
        )  # a prefix: oldest dropped first
    if (
        count < len(rows)
        and estimate_tokens(render_session_context("sess_x", rows[: count + 1])[0]) <= budget
    ):
        pytest.fail("dropped a memory that fitted")


INJECTIONS = [
    "'; DROP TABLE memories;--",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "%s%s%n",
    "\u202e\ufeff",
    "../../etc/passwd",
    "{{7*7}}",
    'scope:"o1" OR *',
]
# Any text but NUL, which both backends refuse alike (tests/test_api_errors.py).
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    content=st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=200
    ).filter(lambda s: s.strip() != "")
    | st.sampled_from(INJECTIONS),
    metadata=st.dictionaries(texts, json_values, max_size=4),
    tags=st.lists(st.from_regex(r"[a-zA-Z0-9_.\-]{1,20}", fullmatch=True), max_size=4, unique=True),
)
def test_any_content_metadata_and_tags_round_trip_literally(
    api: TestClient, content: str, metadata: dict[str, Any], tags: list[str]
) -> None:
    r = api.post(
        "/api/v1/memories",
        json={
            "agent_id": "prop",
            "content": content,
            "metadata": metadata,
            "tags": tags,
            "dedup_key": str(id(content)) + content[:20],
        },
    )
    if r.status_code == 409:
        return
    assert r.status_code == 201, r.text
    stored = api.get(f"/api/v1/memories/{r.json()['id']}").json()
    assert stored["content"] == content
    assert stored.get("metadata", {}) == metadata
    assert stored.get("tags", []) == tags
    if content.strip() and any(ch.isalnum() for ch in content):
        found = api.post(
            "/api/v1/search", json={"content_contains": content, "agent_id": "prop"}
        ).json()
        assert r.json()["id"] in [m["id"] for m in found["results"]]


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_an_org_s_words_are_the_query_s_words_behind_its_prefix(text: str) -> None:
    """The ASCII fast path of ``org_words`` splits exactly where ``query_terms`` does."""
    from memtrace_server.core.text import _WORD, org_words, query_terms, term_prefix

    prefix = term_prefix("org_a")
    words = _WORD.findall(text)
    assert org_words(prefix, text) == " ".join(prefix + w for w in words)
    assert {prefix + w.lower() for w in words} >= {prefix + t for t in query_terms(text)}


@given(
    t=st.integers(min_value=-(2**62), max_value=2**62),
    unit=st.sampled_from([3600 * 10**9, 86_400 * 10**9]),
)
def test_a_time_lies_within_its_bucket_as_sql_truncates_it(t: int, unit: int) -> None:
    """Tally hours and PostgreSQL's day keys are SQL's integer division of a time (toward
    zero); ``bucket_start`` bounds each bucket, as the stats window and the day walk read."""
    from memtrace_server.storage.sql import bucket_of, bucket_start

    b = bucket_of(t, unit)
    assert (b >= 0) is (t > -unit) and (b <= 0) is (t < unit)  # 0 holds (-unit, unit)
    assert bucket_start(b, unit) <= t < bucket_start(b + 1, unit)


WORDY = st.lists(
    st.sampled_from(
        ["refund", "Refunds", "REFUNDABLE", "ref", "refs", "rebate", "under", "é", "日本", "İ"]
    )
    | st.sampled_from([" ", ", ", "\n", "-", "(", "!", "_", "  "]),
    max_size=12,
).map("".join)


@SETTINGS
@given(
    texts=st.lists(st.tuples(WORDY, WORDY, WORDY), min_size=1, max_size=4),
    stems=st.lists(
        st.sampled_from(["re", "ref", "refs", "refund", "refunds", "und", "é", "日"]), max_size=5
    ),
)
def test_a_pool_counts_each_word_for_every_stem_it_begins_with(
    texts: list[tuple[str, str, str]], stems: list[str]
) -> None:
    """The pool's counts, by their definition: the words of each column (split at ASCII
    punctuation and spaces, lowercased) that begin with the stem, the columns weighed; a
    stem that begins another (ref, refund) counts the same word for both. A stem shorter
    than ``PREFIX_STEM`` counts a word only when the rest is one of ``stem``'s suffixes,
    or nothing (ref counts refs, not refund)."""
    from memtrace_server.core.ranking import (
        _SPACES,
        _SUFFIXES,
        CONTEXT_WEIGHT,
        LABEL_WEIGHT,
        PREFIX_STEM,
        Candidate,
        counted,
    )

    def words(text: str) -> list[bytes]:
        return text.lower().encode().translate(_SPACES).split()

    def counts(word: bytes, stem: str) -> bool:
        head = stem.encode()
        if len(stem) >= PREFIX_STEM:
            return word.startswith(head)
        return word == head or any(word == head + end.encode() for end in _SUFFIXES)

    candidates = [Candidate(*columns) for columns in texts]
    frequencies, lengths = counted(candidates, stems)
    for c, tfs, size in zip(candidates, frequencies, lengths, strict=True):
        columns = ((c.content, 1.0), (c.labels, LABEL_WEIGHT), (c.context, CONTEXT_WEIGHT))
        assert size == sum(len(words(text)) for text, _ in columns)
        for s in stems:
            expected = sum(
                weight * sum(1 for w in words(text) if counts(w, s)) for text, weight in columns
            )
            assert tfs[s] == pytest.approx(expected)

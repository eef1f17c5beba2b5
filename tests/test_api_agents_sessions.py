"""Agents, sessions and session context over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from starlette.testclient import TestClient


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_register_get_list_delete_agent(api: TestClient, org_key: tuple[str, str]) -> None:
    r = api.post(
        "/api/v1/agents",
        json={"name": "web crawler", "description": "Crawls", "config": {"depth": 2}},
    )
    assert r.status_code == 201
    agent = r.json()
    assert agent["id"].startswith("agent_") and len(agent["id"]) == 30
    assert agent["org_id"] == org_key[0]
    assert agent["config"] == {"depth": 2}
    assert "last_active_at" not in agent
    assert api.get(f"/api/v1/agents/{agent['id']}").json() == agent
    assert api.get("/api/v1/agents/web crawler").json() == agent
    dup = api.post("/api/v1/agents", json={"name": "web crawler"})
    assert dup.status_code == 409
    assert dup.json() == {"error": "agent 'web crawler' already exists in this organization"}
    api.post("/api/v1/agents", json={"name": "second"})
    listed = api.get("/api/v1/agents").json()
    assert listed["count"] == 2 and listed["agents"][0]["name"] == "second"
    assert api.delete(f"/api/v1/agents/{agent['id']}").status_code == 204
    assert api.get(f"/api/v1/agents/{agent['id']}").status_code == 404
    assert api.delete(f"/api/v1/agents/{agent['id']}").json() == {"error": "agent not found"}


def test_register_requires_name(api: TestClient) -> None:
    for body in ({}, {"name": ""}, {"name": None}):
        r = api.post("/api/v1/agents", json=body)
        assert r.status_code == 400
        assert r.json() == {"error": "name is required"}


def test_session_with_registered_id_name_or_new_id(api: TestClient) -> None:
    agent = api.post("/api/v1/agents", json={"name": "planner"}).json()
    by_id = api.post("/api/v1/sessions", json={"agent_id": agent["id"], "metadata": {"task": "t"}})
    assert by_id.status_code == 201
    session = by_id.json()
    assert session["id"].startswith("sess_") and session["status"] == "active"
    assert session["metadata"] == {"task": "t"} and "closed_at" not in session
    by_name = api.post("/api/v1/sessions", json={"agent_id": "planner"}).json()
    assert by_name["agent_id"] == agent["id"]
    fresh = api.post("/api/v1/sessions", json={"agent_id": "support_agent"}).json()
    assert fresh["agent_id"] == "support_agent"
    implicit = api.get("/api/v1/agents/support_agent").json()
    assert implicit["id"] == implicit["name"] == "support_agent"
    bad = api.post("/api/v1/sessions", json={"agent_id": "not valid!"})
    assert bad.status_code == 400
    assert api.post("/api/v1/sessions", json={}).json() == {"error": "agent_id is required"}


def test_seed_multi_agent_order_session_before_register(api: TestClient) -> None:
    session = api.post(
        "/api/v1/sessions", json={"agent_id": "researcher", "metadata": {"task": "r"}}
    ).json()
    researcher = api.post(
        "/api/v1/agents", json={"name": "researcher", "description": "Investigates"}
    )
    assert researcher.status_code == 201
    assert researcher.json()["id"] == session["agent_id"] == "researcher"
    assert researcher.json()["description"] == "Investigates"
    assert api.post("/api/v1/agents", json={"name": "researcher"}).status_code == 409


def test_session_update_close_reopen_merge(api: TestClient) -> None:
    s = api.post("/api/v1/sessions", json={"agent_id": "a1", "metadata": {"a": 1, "b": 2}}).json()
    closed = api.put(
        f"/api/v1/sessions/{s['id']}", json={"status": "closed", "metadata": {"b": None, "c": 3}}
    ).json()
    assert closed["status"] == "closed" and "closed_at" in closed
    assert closed["metadata"] == {"a": 1, "c": 3}
    reopened = api.put(f"/api/v1/sessions/{s['id']}", json={"status": "active"}).json()
    assert reopened["status"] == "active" and "closed_at" not in reopened
    assert api.put(f"/api/v1/sessions/{s['id']}", json={"status": "paused"}).status_code == 400
    missing = api.put("/api/v1/sessions/sess_missing", json={"status": "closed"})
    assert missing.status_code == 404 and missing.json() == {"error": "session not found"}
    assert api.get("/api/v1/sessions/sess_missing").json() == {"error": "session not found"}
    assert api.get(f"/api/v1/sessions/{s['id']}").json() == reopened


def test_list_sessions_by_agent(api: TestClient) -> None:
    a = api.post("/api/v1/sessions", json={"agent_id": "a1"}).json()
    b = api.post("/api/v1/sessions", json={"agent_id": "a2"}).json()
    assert [s["id"] for s in api.get("/api/v1/sessions").json()["sessions"]] == [b["id"], a["id"]]
    only = api.get("/api/v1/sessions", params={"agent_id": "a1"}).json()
    assert only["count"] == 1 and only["sessions"][0]["id"] == a["id"]


def test_agent_with_sessions_cannot_be_deleted(api: TestClient) -> None:
    api.post("/api/v1/sessions", json={"agent_id": "a1"})
    r = api.delete("/api/v1/agents/a1")
    assert r.status_code == 409
    assert "session" in r.json()["error"]


def test_agent_stats_and_memories(api: TestClient) -> None:
    api.post("/api/v1/sessions", json={"agent_id": "bot"})
    for content, mtype, etype, when in [
        ("a", "episodic", "general", timedelta(0)),
        ("b", "decision", "decision", timedelta(0)),
        ("c", "session", "error", timedelta(0)),
        ("d", "episodic", "general", -timedelta(days=3)),
    ]:
        api.post(
            "/api/v1/memories",
            json={
                "agent_id": "bot",
                "content": content,
                "memory_type": mtype,
                "event_type": etype,
                "time": _iso(when),
            },
        )
    stats = api.get("/api/v1/agents/bot/stats").json()
    assert stats["memory_count"] == 4 and stats["memories_24h"] == 3 and stats["errors_24h"] == 1
    assert stats["session_count"] == 1 and stats["active_sessions"] == 1
    assert stats["memory_types"] == {"episodic": 2, "decision": 1, "session": 1}
    assert "last_active_at" in stats
    zero = api.get("/api/v1/agents/nobody/stats").json()
    assert zero["memory_count"] == 0 and zero["memory_types"] == {}
    recent = api.get("/api/v1/agents/bot/memories").json()
    assert sorted(m["content"] for m in recent["memories"]) == ["a", "b", "c"]
    week = api.get(
        "/api/v1/agents/bot/memories", params={"since": "7d", "memory_type": "episodic"}
    ).json()
    assert sorted(m["content"] for m in week["memories"]) == ["a", "d"]


def test_session_memories_and_context(api: TestClient) -> None:
    sid = api.post("/api/v1/sessions", json={"agent_id": "bot"}).json()["id"]
    rows = [
        ("session", "error", "Rate limited, backing off", timedelta(minutes=-3)),
        ("episodic", "api_call", "Called the pricing API and got 3 items", timedelta(minutes=-2)),
        ("decision", "decision", "Skip pagination", timedelta(minutes=-1)),
        ("episodic", "old", "Too old for the default window", -timedelta(hours=30)),
    ]
    times = {}
    for mtype, etype, content, when in rows:
        m = api.post(
            "/api/v1/memories",
            json={
                "agent_id": "bot",
                "session_id": sid,
                "memory_type": mtype,
                "event_type": etype,
                "content": content,
                "time": _iso(when),
            },
        ).json()
        times[content] = m["time"]
    api.post("/api/v1/memories", json={"agent_id": "bot", "content": "not in the session"})
    listed = api.get(f"/api/v1/sessions/{sid}/memories").json()
    assert listed["count"] == 4
    ctx = api.post(f"/api/v1/sessions/{sid}/context", json={}).json()
    assert ctx == {
        "session_id": sid,
        "memory_count": 3,
        "context": (
            f"## Session Context ({sid})\n\n"
            f"### Recent Actions (1)\n- [{times['Called the pricing API and got 3 items']}] api_call: Called the pricing API and got 3 items\n\n"
            f"### Decisions Made (1)\n- [{times['Skip pagination']}] decision: Skip pagination\n\n"
            f"### Errors (1)\n- [{times['Rate limited, backing off']}] error: Rate limited, backing off\n\n"
        ),
    }
    assert api.post(f"/api/v1/sessions/{sid}/context").json() == ctx  # no body means defaults
    wide = api.post(
        f"/api/v1/sessions/{sid}/context", json={"since": _iso(-timedelta(days=2))}
    ).json()
    assert wide["memory_count"] == 4
    only = api.post(f"/api/v1/sessions/{sid}/context", json={"include_types": ["decision"]}).json()
    assert only["memory_count"] == 1 and "Decisions Made (1)" in only["context"]
    small = api.post(f"/api/v1/sessions/{sid}/context", json={"max_tokens": 40}).json()
    assert 0 < small["memory_count"] < 3
    assert len(small["context"]) <= 160
    assert "Skip pagination" in small["context"]  # newest kept
    empty = api.post("/api/v1/sessions/sess_nothing/context", json={}).json()
    assert empty == {
        "session_id": "sess_nothing",
        "context": "## Session Context (sess_nothing)\n\n",
        "memory_count": 0,
    }


def test_agent_context_spans_sessions(api: TestClient) -> None:
    s1 = api.post("/api/v1/sessions", json={"agent_id": "bot"}).json()["id"]
    s2 = api.post("/api/v1/sessions", json={"agent_id": "bot"}).json()["id"]
    api.post(
        "/api/v1/memories",
        json={"agent_id": "bot", "session_id": s1, "content": "from session one"},
    )
    api.post(
        "/api/v1/memories",
        json={
            "agent_id": "bot",
            "session_id": s2,
            "content": "from session two",
            "memory_type": "decision",
            "event_type": "decision",
        },
    )
    api.post("/api/v1/memories", json={"agent_id": "bot", "content": "no session"})
    api.post("/api/v1/memories", json={"agent_id": "other", "content": "not this agent"})
    ctx = api.post("/api/v1/agents/bot/context", json={}).json()
    assert ctx["agent_id"] == "bot" and ctx["memory_count"] == 3
    assert ctx["context"].startswith("## Agent Context (bot)\n\n### Recent Actions (2)\n")
    assert "decision: from session two" in ctx["context"] and "not this agent" not in ctx["context"]
    assert (
        api.post("/api/v1/agents/bot/context", json={"include_types": ["decision"]}).json()[
            "memory_count"
        ]
        == 1
    )
    assert api.post("/api/v1/agents/bad id/context", json={}).status_code == 400
    assert api.post("/api/v1/agents/bot/context", json={"since": "nope"}).status_code == 400

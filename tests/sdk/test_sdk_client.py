"""The SDK against the real server app: in-process for every method, sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from memtrace import (
    AddMemoryRequest,
    AsyncMemtrace,
    AuthenticationError,
    ConflictError,
    ContextOptions,
    CreateSessionRequest,
    ListOptions,
    Memtrace,
    MemtraceConnectionError,
    MemtraceError,
    NoArcInstanceError,
    NotFoundError,
    PermissionDeniedError,
    RegisterAgentRequest,
    SearchQuery,
    ServiceUnavailableError,
    ValidationError,
)

from conftest import App, AppTransport, LiveServer, free_port, new_cli_key


@pytest.fixture
def key(app: App, org_key: tuple[str, str]) -> str:
    return org_key[1]


@pytest.fixture
def client(app: App, key: str) -> Iterator[Memtrace]:
    with app.sdk(key, retry_backoff=0) as c:
        yield c


@pytest.fixture
async def aclient(app: App, key: str) -> AsyncIterator[AsyncMemtrace]:
    async with app.async_sdk(key, retry_backoff=0) as c:
        yield c


def test_every_method_sync(client: Memtrace) -> None:
    mem = client.remember("agent_1", "User prefers dark mode", tags=["ui"])
    assert mem.id and mem.id.startswith("mem_") and mem.tags == ["ui"]
    with pytest.raises(ConflictError) as dup:
        client.remember("agent_1", "User prefers dark mode")
    assert dup.value.status_code == 409 and dup.value.message == "duplicate memory"
    agent = client.register_agent(RegisterAgentRequest(name="assistant", description="helps"))
    session = client.create_session({"agent_id": agent.id, "metadata": {"task": "t"}})
    decision = client.decide(
        agent.id, "Use PostgreSQL", "Need ACID", session_id=session.id, importance=0.9
    )
    assert decision.memory_type == "decision" and decision.metadata == {"reasoning": "Need ACID"}
    assert decision.session_id == session.id and decision.importance == 0.9
    added = client.add_memory(
        {
            "agent_id": agent.id,
            "session_id": session.id,
            "content": "Alex likes tea",
            "tags": ["pref"],
            "importance": 0,
        }
    )
    assert added.memory_type == "episodic" and added.event_type == "general"
    batch = client.add_memories([{"agent_id": agent.id, "content": f"fact {i}"} for i in range(3)])
    assert [m.content for m in batch] == ["fact 0", "fact 1", "fact 2"]
    assert client.get_memory(added.id or "").content == "Alex likes tea"
    assert client.recall("agent_1").count == 1
    listed = client.list_memories({"agent_id": agent.id, "tags": ["pref"]})
    assert [m.content for m in listed.memories] == ["Alex likes tea"]
    assert client.list_memories(agent_id=agent.id, limit=2).has_more is True
    found = client.search_memories(
        {"agent_id": agent.id, "content_contains": "tea", "tags": None, "min_importance": None}
    )
    assert (
        [m.content for m in found.memories]
        == ["Alex likes tea"]
        == [m.content for m in found.results]
    )
    assert client.list_agents().count == 1
    assert client.get_agent("assistant").id == agent.id
    stats = client.get_agent_stats(agent.id)
    assert stats.memory_count == 5 and stats.session_count == 1
    assert client.get_agent_memories(agent.id, {"limit": 2}).count == 2
    assert client.get_session(session.id).metadata == {"task": "t"}
    ctx = client.get_session_context(session.id, ContextOptions(since="1h"))
    assert ctx.memory_count == 2 and "Decisions Made (1)" in ctx.context
    assert client.get_session_memories(session.id).count == 2
    assert client.list_sessions().count == 1 and client.list_sessions(agent.id).count == 1
    updated = client.update_session(session.id, {"metadata": {"step": 2}})
    assert updated.metadata == {"task": "t", "step": 2}
    closed = client.close_session(session.id)
    assert closed.status == "closed" and closed.closed_at is not None
    spare = client.register_agent({"name": "spare"})
    assert client.delete_agent(spare.id) is None
    with pytest.raises(NotFoundError):
        client.get_agent(spare.id)


@pytest.mark.anyio
async def test_every_method_async(aclient: AsyncMemtrace) -> None:
    mem = await aclient.remember("agent_1", "async memory")
    with pytest.raises(ConflictError):
        await aclient.remember("agent_1", "async memory")
    agent = await aclient.register_agent({"name": "async-agent"})
    session = await aclient.create_session(CreateSessionRequest(agent_id="async-agent"))
    assert session.agent_id == agent.id
    await aclient.decide(agent.id, "ship it", "tests pass", session_id=session.id)
    await aclient.add_memory({"agent_id": agent.id, "session_id": session.id, "content": "x"})
    assert len(await aclient.add_memories([{"agent_id": agent.id, "content": "y"}])) == 1
    assert (await aclient.get_memory(mem.id or "")).content == "async memory"
    assert (await aclient.recall("agent_1")).count == 1
    assert (await aclient.list_memories(ListOptions(agent_id=agent.id))).count == 3
    assert (await aclient.search_memories(SearchQuery(content_contains="ship"))).count == 1
    assert (await aclient.list_agents()).count == 1
    assert (await aclient.get_agent(agent.id)).name == "async-agent"
    assert (await aclient.get_agent_stats(agent.id)).memory_count == 3
    assert (await aclient.get_agent_memories(agent.id)).count == 3
    assert (await aclient.get_session(session.id)).status == "active"
    ctx = await aclient.get_session_context(session.id)
    assert ctx.memory_count == 2
    assert (await aclient.get_session_memories(session.id)).count == 2
    assert (await aclient.list_sessions(agent.id)).count == 1
    assert (await aclient.update_session(session.id, {"metadata": {"a": 1}})).metadata == {"a": 1}
    assert (await aclient.close_session(session.id)).status == "closed"
    spare = await aclient.register_agent(RegisterAgentRequest(name="spare"))
    await aclient.delete_agent(spare.id)
    with pytest.raises(NotFoundError):
        await aclient.get_agent(spare.id)


def test_code_written_for_020_typed_models_still_works(client: Memtrace) -> None:
    mem = client.add_memory(
        AddMemoryRequest(
            agent_id="legacy",
            memory_type="entity",
            event_type="customer_verification",
            content="Customer verified",
            tags=["kyc"],
            importance=0.4,
        )
    )
    assert mem.memory_type == "entity"
    page = client.list_memories(
        ListOptions(agent_id="legacy", tags="kyc", since="1h", limit=10, order="desc")
    )
    assert page.count == 1 and page.has_more is False
    result = client.search_memories(
        SearchQuery(agent_id="legacy", memory_types=["entity"], min_importance=0.3)
    )
    assert [m.content for m in result.results] == ["Customer verified"]
    assert result.query_time_ms >= 0
    session = client.create_session(CreateSessionRequest(agent_id="legacy"))
    ctx = client.get_session_context(
        session.id, ContextOptions(max_tokens=100, include_types=["entity"], since="2h")
    )
    assert ctx.memory_count == 0 and ctx.context == f"## Session Context ({session.id})\n\n"


def test_error_mapping(app: App, client: Memtrace, org_key: tuple[str, str]) -> None:
    with pytest.raises(ValidationError) as bad:
        client.list_memories(since="2x")
    assert bad.value.status_code == 400 and "invalid since" in bad.value.message
    with pytest.raises(ValidationError) as local:
        client.add_memory({"agent_id": "a"})  # refused before sending: no content
    assert local.value.status_code == 0
    with pytest.raises(NotFoundError):
        client.get_session("sess_missing")
    with pytest.raises(ConflictError):
        client.register_agent({"name": "twice"})
        client.register_agent({"name": "twice"})
    reader = app.new_key(org_key[0], "read", name="reader")
    with (
        app.sdk(reader) as ro,
        pytest.raises(PermissionDeniedError) as denied,
    ):
        ro.remember("a", "x")
    assert denied.value.status_code == 403
    with (
        app.sdk("mtk_" + "B" * 43 + "=") as wrong,
        pytest.raises(AuthenticationError) as unauth,
    ):
        wrong.list_agents()
    assert unauth.value.status_code == 401 and unauth.value.message == "invalid API key"


class CountingTransport(httpx.BaseTransport):
    """Counts requests on their way to a real transport."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.count = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return self.inner.handle_request(request)


def test_503_is_typed_and_retried_only_when_safe(app: App, key: str) -> None:
    counting = CountingTransport(AppTransport(app.client))  # the app's own in-process transport
    app.call(app.services.stores.close)  # the store goes away: every data call is a real 503
    with Memtrace(
        "http://testserver", key, transport=counting, max_retries=2, retry_backoff=0
    ) as c:
        with pytest.raises(ServiceUnavailableError) as unavailable:
            c.list_agents()
        assert unavailable.value.status_code == 503 and isinstance(
            unavailable.value, NoArcInstanceError
        )
        assert counting.count == 3  # a read: first try plus two retries
        counting.count = 0
        with pytest.raises(ServiceUnavailableError):
            c.remember("a", "not retried: a second send could store it twice")
        assert counting.count == 1
        counting.count = 0
        with pytest.raises(ServiceUnavailableError):
            c.add_memory({"agent_id": "a", "content": "retried", "dedup_key": "k1"})
        assert counting.count == 3


def test_connection_refused_is_wrapped_and_retried() -> None:
    port = free_port()  # nothing listens here
    counting = CountingTransport(httpx.HTTPTransport())
    with (
        Memtrace(
            f"http://127.0.0.1:{port}", "mtk_x", transport=counting, max_retries=1, retry_backoff=0
        ) as c,
        pytest.raises(MemtraceConnectionError) as refused,
    ):
        c.list_agents()
    assert refused.value.status_code == 0 and isinstance(refused.value, MemtraceError)
    assert counting.count == 2


def test_retried_create_that_already_landed_returns_the_memory(app: App, key: str) -> None:
    class LoseFirstResponse(httpx.BaseTransport):
        """Delivers the first request to the server but reports a dropped connection."""

        def __init__(self, inner: httpx.BaseTransport) -> None:
            self.inner, self.seen = inner, 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.seen += 1
            response = self.inner.handle_request(request)
            if self.seen == 1:
                raise httpx.ReadError("connection reset after the server answered")
            return response

    with Memtrace(
        "http://testserver",
        key,
        transport=LoseFirstResponse(AppTransport(app.client)),
        retry_backoff=0,
    ) as c:
        mem = c.add_memory({"agent_id": "a", "content": "exactly once", "dedup_key": "once-1"})
    assert mem.content == "exactly once"
    assert app.client.get("/api/v1/memories", headers={"x-api-key": key}).json()["count"] == 1


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTRACE_URL", "http://example.invalid:9999/")
    monkeypatch.setenv("MEMTRACE_API_KEY", "mtk_env")
    c = Memtrace()
    assert c.base_url == "http://example.invalid:9999" and c.api_key == "mtk_env"
    c.close()
    monkeypatch.delenv("MEMTRACE_API_KEY")
    with pytest.raises(AuthenticationError):
        Memtrace("http://x")


def test_over_a_real_socket(live_server: LiveServer) -> None:
    _, key = new_cli_key(live_server.data_dir)
    with Memtrace(live_server.url, key) as c:
        mem = c.remember("socket-agent", "over TCP")
        assert c.get_memory(mem.id or "").content == "over TCP"

    async def run() -> int:
        async with AsyncMemtrace(live_server.url, key) as ac:
            return (await ac.recall("socket-agent")).count

    import asyncio

    assert asyncio.run(run()) == 1


@pytest.mark.anyio
async def test_async_error_mapping(app: App, aclient: AsyncMemtrace) -> None:
    with pytest.raises(NotFoundError):
        await aclient.get_agent("nobody")
    with pytest.raises(ValidationError) as bad:
        await aclient.search_memories(since="later")
    assert bad.value.status_code == 400
    await aclient.remember("a", "once")
    with pytest.raises(ConflictError):
        await aclient.remember("a", "once")
    async with app.async_sdk("mtk_" + "D" * 43 + "=") as wrong:
        with pytest.raises(AuthenticationError):
            await wrong.list_sessions()
    async with AsyncMemtrace(f"http://127.0.0.1:{free_port()}", "k", max_retries=0) as nowhere:
        with pytest.raises(MemtraceConnectionError):
            await nowhere.list_agents()


def test_lifecycle_methods(client: Memtrace) -> None:
    agent = client.register_agent({"name": "tidy", "config": {"a": 1}})
    assert client.update_agent(agent.id, {"description": "tidier", "config": {"b": 2}}).config == {
        "a": 1,
        "b": 2,
    }
    session = client.create_session({"agent_id": agent.id})
    kept = client.add_memory({"agent_id": agent.id, "content": "keep", "ttl": "7d"})
    assert kept.expires_at is not None
    gone = client.add_memory(
        {"agent_id": agent.id, "session_id": session.id, "content": "gone", "tags": ["x"]}
    )
    assert client.erase_memories(tags=["x"], dry_run=True).deleted == 1
    assert client.erase_memories({"tags": ["x"]}).deleted == 1
    with pytest.raises(NotFoundError):
        client.get_memory(gone.id or "")
    client.delete_memory(kept.id or "")
    with pytest.raises(NotFoundError):
        client.delete_memory(kept.id or "")
    with pytest.raises(ValidationError):
        client.erase_memories({})
    client.delete_session(session.id, cascade=True)
    with pytest.raises(NotFoundError):
        client.get_session(session.id)
    client.add_memory({"agent_id": agent.id, "content": "last one"})
    client.create_session({"agent_id": agent.id})
    client.delete_agent(agent.id, cascade=True)
    assert client.list_sessions().count == 0 and client.list_memories(agent_id=agent.id).count == 0


def test_ranked_search_and_query_context(client: Memtrace) -> None:
    session = client.create_session({"agent_id": "ranker"})
    for text in (
        "Alex prefers dark mode in every editor",
        "Lunch was pasta",
        "Dark chocolate is Alex's favourite",
    ):
        client.remember("ranker", text, session_id=session.id)
    found = client.search_memories(query="which mode does Alex prefer?", agent_id="ranker")
    assert found.results[0].content == "Alex prefers dark mode in every editor"
    assert found.results[0].score is not None and found.results[0].score > 0
    ctx = client.get_session_context(session.id, {"query": "pasta lunch", "max_tokens": 60})
    first_line = ctx.context.split("\n")[3]  # most relevant first, least relevant cut by the budget
    assert ctx.memory_count < 3 and first_line.endswith("general: Lunch was pasta")
    agent_ctx = client.get_agent_context("ranker", {"query": "chocolate"})
    assert agent_ctx.context.startswith("## Agent Context (ranker)") and agent_ctx.memory_count >= 1


def test_keyed_memories_and_metadata_filters_sync(client: Memtrace) -> None:
    first = client.remember("support", "on the Pro plan", key="plan", metadata={"tier": 2})
    second = client.remember("support", "moved to Enterprise", key="plan", metadata={"tier": 3})
    assert first.key == second.key == "plan" and second.superseded_by is None
    assert [m.content for m in client.list_memories(agent_id="support").memories] == [
        "moved to Enterprise"
    ]
    every = client.list_memories(agent_id="support", include_superseded=True, key="plan")
    assert [m.id for m in every.memories] == [second.id, first.id]
    versions = client.memory_versions(first.id)
    assert versions.count == 2 and versions.memories[1].superseded_by == second.id
    assert versions.memories[1].superseded_at is not None
    assert [m.content for m in client.list_memories(metadata={"tier": 3}).memories] == [
        "moved to Enterprise"
    ]
    found = client.search_memories(metadata={"tier": 2}, include_superseded=True)
    assert [m.id for m in found.results] == [first.id]


@pytest.mark.anyio
async def test_keyed_memories_and_metadata_filters_async(aclient: AsyncMemtrace) -> None:
    first = await aclient.remember("support", "prefers email", key="channel")
    second = await aclient.add_memory(
        {"agent_id": "support", "content": "prefers phone", "key": "channel"}
    )
    versions = await aclient.memory_versions(second.id)
    assert [m.id for m in versions.memories] == [second.id, first.id]
    found = await aclient.search_memories(key="channel")
    assert [m.content for m in found.results] == ["prefers phone"]
    erased = await aclient.erase_memories(key="channel", include_superseded=True)
    assert erased.deleted == 2


def test_search_explain_sync(client: Memtrace) -> None:
    client.remember("why", "Alex prefers dark mode", importance=0.5)
    found = client.search_memories(query="dark mode", explain=True, importance_weight=1.0)
    why = found.results[0].explanation
    assert why is not None and why.text_score is not None and why.text_score > 0
    assert why.importance_factor == pytest.approx(1.5) and why.recency_factor == 1.0
    assert why.final_score == pytest.approx(why.text_score * 1.5, rel=1e-5)
    typed = client.search_memories(SearchQuery(query="dark mode"))
    assert typed.results[0].explanation is None


@pytest.mark.anyio
async def test_search_explain_async(aclient: AsyncMemtrace) -> None:
    await aclient.remember("why", "Alex prefers dark mode")
    found = await aclient.search_memories(SearchQuery(query="dark mode", explain=True))
    why = found.results[0].explanation
    assert why is not None and why.final_score == pytest.approx(why.text_score)

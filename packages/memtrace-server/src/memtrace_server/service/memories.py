"""Writing, listing, searching and rendering memories."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from memtrace_server.core.context import (
    CONTEXT_ROW_LIMIT,
    render_agent_context,
    render_session_context,
)
from memtrace_server.core.dedup import dedup_key
from memtrace_server.core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from memtrace_server.core.explain import Explanation, importance_factor, recency_factor
from memtrace_server.core.ids import new_memory_id
from memtrace_server.core.records import MemoryFilter, MemoryRecord
from memtrace_server.core.requests import (
    ContextRequest,
    CreateMemoryRequest,
    EraseRequest,
    SearchRequest,
)
from memtrace_server.core.rules import DAY_NS
from memtrace_server.core.text import query_terms
from memtrace_server.core.timefmt import (
    NS_PER_SECOND,
    now_ns,
    parse_relative,
    parse_since,
    parse_until,
)
from memtrace_server.core.validation import (
    check_id,
    check_tags,
    check_type,
    key_error,
    metadata_filter_error,
)
from memtrace_server.service.semantic import Embedder, FusedHit, fuse_explained
from memtrace_server.storage.routing import Stores

LIST_DEFAULT_LIMIT = 100
SEARCH_DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_FUTURE_NS = 3600 * NS_PER_SECOND
# Hybrid search ranks by meaning at most this many of the newest memories that match the
# filters (a brute-force scan; the lexical half has no such bound).
DENSE_SCAN_LIMIT = 20_000
HYBRID_OFF = (
    "hybrid search is off on this server: install memtrace-server[semantic] and set"
    " search.semantic = true"
)


def effective_limit(requested: int | None, default: int) -> int:
    """The reference's defaults for missing or non-positive limits; at most 1000."""
    if requested is None or requested <= 0:
        return default
    return min(requested, MAX_LIMIT)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of memories and whether more match."""

    memories: list[MemoryRecord]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Context:
    """A rendered context, the number of memories in it, and how ``query`` ranked them."""

    text: str
    memory_count: int
    mode: str | None = None


class Memories:
    """Memory use cases for one store."""

    def __init__(
        self,
        stores: Stores,
        *,
        dedup_window_hours: int | None = 24,
        max_batch: int = 1000,
        max_content_bytes: int = 65536,
        max_metadata_bytes: int = 16384,
        max_tags: int = 32,
        embedder: Embedder | None = None,
        hybrid_unavailable: str = HYBRID_OFF,
        on_write: Callable[[], None] | None = None,
    ) -> None:
        self.stores = stores
        self.embedder = embedder  # set when hybrid search is on and installed
        self.hybrid_unavailable = hybrid_unavailable
        self._on_write = on_write
        self.max_batch = max_batch
        self.max_content_bytes = max_content_bytes
        self.max_metadata_bytes = max_metadata_bytes
        self.max_tags = max_tags
        self.dedup_window_ns = (
            dedup_window_hours * 3600 * NS_PER_SECOND if dedup_window_hours else None
        )

    def _check_limits(self, req: CreateMemoryRequest) -> None:
        size = len(req.content.encode("utf-8"))
        if size > self.max_content_bytes:
            raise PayloadTooLarge(f"content is {size} bytes; the limit is {self.max_content_bytes}")
        if req.metadata:
            meta = len(orjson.dumps(req.metadata))
            if meta > self.max_metadata_bytes:
                raise PayloadTooLarge(
                    f"metadata is {meta} bytes of JSON; the limit is {self.max_metadata_bytes}"
                )
        if len(req.tags) > self.max_tags:
            raise BadRequest(f"{len(req.tags)} tags; at most {self.max_tags} are allowed")

    def _record(self, org_id: str, req: CreateMemoryRequest, now: int) -> MemoryRecord:
        self._check_limits(req)
        given = req.time_ns
        time_ns = given if given is not None else now
        if time_ns > now + MAX_FUTURE_NS:
            raise BadRequest(f"invalid time '{req.time}': more than an hour in the future")
        expires = req.expiry_ns(now)
        if expires is not None and expires <= now:
            raise BadRequest(
                "the memory would expire before it is stored: expires_at is in the past"
            )
        key = req.dedup_key
        if not key and self.dedup_window_ns is not None:
            key = dedup_key(req.agent_id, req.event_type, req.content)
        return MemoryRecord(
            id=new_memory_id(time_ns),
            org_id=org_id,
            agent_id=req.agent_id,
            session_id=req.session_id,
            memory_type=req.memory_type,
            event_type=req.event_type,
            content=req.content,
            metadata=req.metadata or None,
            tags=tuple(req.tags),
            dedup_key=key,
            importance=req.importance,
            parent_id=req.parent_id,
            time_ns=time_ns,
            expires_at_ns=expires,
            key=req.key,
        )

    async def create(self, org_id: str, req: CreateMemoryRequest) -> MemoryRecord:
        """Store one memory; 409 if it duplicates one within the dedup window."""
        now = now_ns()
        record = self._record(org_id, req, now)
        store = await self.stores.tenant(org_id)
        (stored,) = await store.insert_memories(org_id, [record], self.dedup_window_ns, now)
        if not stored:
            raise Conflict("duplicate memory")
        if self._on_write is not None:
            self._on_write()
        return record

    async def create_many(
        self, org_id: str, reqs: Sequence[CreateMemoryRequest]
    ) -> list[MemoryRecord]:
        """Store a batch in one transaction; duplicates (also within the batch) are skipped."""
        if len(reqs) > self.max_batch:
            raise PayloadTooLarge(
                f"batch of {len(reqs)} memories exceeds the limit of {self.max_batch}"
            )
        records = []
        now = now_ns()
        for index, req in enumerate(reqs):
            try:
                records.append(self._record(org_id, req, now))
            except (BadRequest, PayloadTooLarge) as exc:
                raise type(exc)(f"failed to create memory {index}: {exc.message}") from exc
        store = await self.stores.tenant(org_id)
        stored = await store.insert_memories(org_id, records, self.dedup_window_ns, now)
        if self._on_write is not None:
            self._on_write()
        return [r for r, ok in zip(records, stored, strict=True) if ok]

    async def get(self, org_id: str, ref: str) -> MemoryRecord:
        """A memory by id (or dedup key); 404 when this org has none (or it expired)."""
        if not ref or len(ref) > 256:
            raise BadRequest("invalid memory id")
        found = await (await self.stores.tenant(org_id)).get_memory(org_id, ref)
        now = now_ns()
        if found is None or (found.expires_at_ns is not None and found.expires_at_ns <= now):
            raise NotFound("memory not found")
        floor = await self._retention_floor(org_id, now)
        if floor is not None and found.time_ns <= floor:
            raise NotFound("memory not found")
        return found

    async def _retention_floor(self, org_id: str, now: int) -> int | None:
        org = await self.stores.org(org_id)
        if org is None or not org.retention_days:
            return None
        return now - org.retention_days * DAY_NS

    async def visible(self, org_id: str, flt: MemoryFilter) -> MemoryFilter:
        """The filter limited to what the org may still see: unexpired and within retention."""
        now = now_ns()
        floor = await self._retention_floor(org_id, now)
        since = flt.since_ns
        if floor is not None:
            since = floor if since is None else max(since, floor)
        return replace(flt, visible_at_ns=now, since_ns=since)

    async def page(self, org_id: str, flt: MemoryFilter) -> Page:
        """Memories for a filter, probing one extra row so ``has_more`` is exact."""
        flt = await self.visible(org_id, flt)
        store = await self.stores.tenant(org_id)
        rows = await store.query_memories(org_id, replace(flt, limit=flt.limit + 1))
        return Page(rows[: flt.limit], len(rows) > flt.limit)

    async def versions(self, org_id: str, memory_id: str) -> list[MemoryRecord]:
        """Every version of a memory's key, newest first (a memory without a key: itself)."""
        memory = await self.get(org_id, memory_id)
        if not memory.key:
            return [memory]
        flt = MemoryFilter(
            agent_id=memory.agent_id, key=memory.key, include_superseded=True, limit=MAX_LIMIT
        )
        store = await self.stores.tenant(org_id)
        return await store.query_memories(org_id, await self.visible(org_id, flt))

    async def delete(self, org_id: str, memory_id: str) -> None:
        """Erase one memory; 404 when this org has none with that id."""
        if not memory_id or len(memory_id) > 256:
            raise BadRequest("invalid memory id")
        if not await (await self.stores.tenant(org_id)).delete_memory(org_id, memory_id):
            raise NotFound("memory not found")

    async def erase(self, org_id: str, req: EraseRequest) -> int:
        """Erase (or with ``dry_run`` count) every memory matching at least one filter."""
        if req.query or req.recency_half_life or req.importance_weight:
            raise BadRequest("erase takes structured filters only, not query or ranking options")
        flt = replace(self.search_filter(req), limit=0, offset=0)
        if replace(flt, include_superseded=False) == MemoryFilter(
            limit=0, offset=0, ascending=flt.ascending
        ):
            raise BadRequest(
                "give at least one filter (agent_id, session_id, memory_types, event_types, "
                "tags, content_contains, since, until, min_importance, key, metadata) to erase by"
            )
        store = await self.stores.tenant(org_id)
        if req.dry_run:
            return await store.count_memories(org_id, flt)
        return await store.delete_memories(org_id, flt)

    async def purge(self) -> int:
        """Erase expired memories and those past their org's retention."""
        now = now_ns()
        floors = {
            org.id: now - org.retention_days * DAY_NS
            for org in await self.stores.control.list_orgs()
            if org.retention_days
        }
        erased = 0
        for store in self.stores.tenants():
            erased += await store.purge_expired(now, floors)
        return erased

    async def search(self, org_id: str, req: SearchRequest) -> list[MemoryRecord]:
        """Structured search, newest first by default, 50 results by default.

        With ``query``: ranked by relevance after every other filter; optionally blended
        with recency (``recency_half_life``) and importance (``importance_weight``).
        """
        return [memory for memory, _ in await self.search_explained(org_id, req)]

    async def search_explained(
        self, org_id: str, req: SearchRequest
    ) -> list[tuple[MemoryRecord, Explanation]]:
        """:meth:`search`, each result with the components of its score."""
        mode = self.ranking_mode(req.mode, req.query)
        half_life = parse_relative(req.recency_half_life) if req.recency_half_life else None
        if req.recency_half_life and half_life is None:
            raise BadRequest(
                f"invalid recency_half_life '{req.recency_half_life}': use e.g. 12h or 7d"
            )
        if req.importance_weight < 0:
            raise BadRequest("invalid importance_weight: must be 0 or more")
        flt = await self.visible(org_id, self.search_filter(req))
        hybrid = mode == "hybrid"
        store = await self.stores.tenant(org_id)
        if not flt.query:
            return [(m, Explanation()) for m in await store.query_memories(org_id, flt)]
        if not (half_life or req.importance_weight or hybrid):
            ranked = await store.query_memories(org_id, flt)
            return [(m, Explanation(m.score, None, m.score, final_score=m.score)) for m in ranked]
        wide = replace(flt, limit=min(MAX_LIMIT, max(4 * (flt.limit + flt.offset), 200)), offset=0)
        pool = await store.query_memories(org_id, wide)
        if hybrid:
            hits = await self._fuse_dense(org_id, req.query, wide, pool)
        else:
            hits = [FusedHit(m, m.score or 0.0, None) for m in pool]
        now = now_ns()
        explained = []
        for hit in hits:
            m = hit.memory
            final = (
                blend(m, now, half_life, req.importance_weight)
                if half_life or req.importance_weight
                else m.score
            )
            explained.append(
                (
                    replace(m, score=final),
                    Explanation(
                        text_score=hit.text_score,
                        semantic_similarity=hit.similarity,
                        relevance=m.score,
                        recency_factor=recency_factor(now - m.time_ns, half_life),
                        importance_factor=importance_factor(m.importance, req.importance_weight),
                        final_score=final,
                        hybrid=hybrid,
                    ),
                )
            )
        if half_life or req.importance_weight:
            explained.sort(key=lambda pair: pair[0].score or 0.0, reverse=True)
        return explained[flt.offset : flt.offset + flt.limit]

    def ranking_mode(self, requested: str | None, query: str) -> str | None:
        """How ``query`` ranks: as requested, else hybrid when this server has semantic
        search, else bm25; None when there is nothing to rank by. 400 for hybrid when off."""
        if requested == "hybrid" and self.embedder is None:
            raise BadRequest(self.hybrid_unavailable)
        if not query_terms(query):
            return None
        return requested or ("hybrid" if self.embedder is not None else "bm25")

    async def _fuse_dense(
        self, org_id: str, query: str, flt: MemoryFilter, lexical: list[MemoryRecord]
    ) -> list[FusedHit]:
        """The lexical ranking fused with closeness in meaning (same filters)."""
        assert self.embedder is not None
        (vector,) = await self.embedder.encode_async([query])
        store = await self.stores.tenant(org_id)
        candidates = await store.embedded_memories(org_id, replace(flt, limit=DENSE_SCAN_LIMIT))
        return fuse_explained(vector, lexical, candidates)

    def search_filter(self, req: SearchRequest) -> MemoryFilter:
        """The filter a search (or erase) body describes."""
        now = now_ns()
        return MemoryFilter(
            agent_id=req.agent_id or None,
            session_id=req.session_id or None,
            memory_types=tuple(t for t in req.memory_types if t),
            event_types=tuple(t for t in req.event_types if t),
            tags=tuple(dict.fromkeys(t for t in req.tags if t)),
            content_contains=req.content_contains or None,
            since_ns=parse_since("since", req.since, now),
            until_ns=parse_until(req.until, now),
            min_importance=req.min_importance if req.min_importance > 0 else None,
            query=tuple(query_terms(req.query)),
            limit=effective_limit(req.limit, SEARCH_DEFAULT_LIMIT),
            offset=max(req.offset, 0),
            ascending=req.order == "asc",
            key=req.key or None,
            include_superseded=req.include_superseded,
            metadata=tuple(req.metadata.items()),
        )

    async def session_context(self, org_id: str, session_id: str, req: ContextRequest) -> Context:
        """The reference's markdown block of a session's recent memories."""
        check_id("session_id", session_id)
        rows, mode = await self._context_rows(org_id, req, session_id=session_id)
        text, count = render_session_context(session_id, rows, req.max_tokens or None)
        return Context(text, count, mode)

    async def agent_context(self, org_id: str, agent_id: str, req: ContextRequest) -> Context:
        """The same block for an agent's memories across all of its sessions."""
        check_id("agent_id", agent_id)
        rows, mode = await self._context_rows(org_id, req, agent_id=agent_id)
        text, count = render_agent_context(agent_id, rows, req.max_tokens or None)
        return Context(text, count, mode)

    async def _context_rows(
        self,
        org_id: str,
        req: ContextRequest,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
    ) -> tuple[list[MemoryRecord], str | None]:
        if req.max_tokens < 0:
            raise BadRequest("invalid max_tokens: must be 0 (no limit) or more")
        flt = MemoryFilter(
            memory_types=tuple(t for t in req.include_types if t),
            since_ns=parse_since("since", req.since or "24h", now_ns()),
            query=tuple(query_terms(req.query)),
            limit=CONTEXT_ROW_LIMIT,
            session_id=session_id,
            agent_id=agent_id,
        )
        mode = self.ranking_mode(req.mode, req.query)
        flt = await self.visible(org_id, flt)
        store = await self.stores.tenant(org_id)
        rows = await store.query_memories(org_id, flt)
        if mode == "hybrid":
            hits = await self._fuse_dense(org_id, req.query, flt, rows)
            rows = [hit.memory for hit in hits[:CONTEXT_ROW_LIMIT]]
        return rows, mode


def blend(
    memory: MemoryRecord, now: int, half_life_ns: int | None, importance_weight: float
) -> float:
    """Relevance times ``1 + weight x importance``, halved per ``half_life`` of age."""
    score = (memory.score or 0.0) * importance_factor(memory.importance, importance_weight)
    if half_life_ns:
        score *= recency_factor(now - memory.time_ns, half_life_ns)
    return score


def list_filter(
    *,
    now: int,
    agent_id: str | None = None,
    session_id: str | None = None,
    memory_type: str | None = None,
    event_type: str | None = None,
    tags: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    order: str | None = None,
    key: str | None = None,
    include_superseded: bool | None = None,
    metadata: str | None = None,
) -> MemoryFilter:
    """Validate the list endpoints' query parameters into a filter (400 on bad input)."""
    tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
    if key and key_error(key):
        raise BadRequest(key_error(key) or "")
    fields: dict[str, Any] = {}
    if metadata:
        try:
            fields = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            raise BadRequest(
                'invalid metadata filter: must be JSON, e.g. {"plan": "pro"}'
            ) from None
        message = metadata_filter_error(fields)
        if message:
            raise BadRequest(message)
    return MemoryFilter(
        agent_id=check_id("agent_id", agent_id) if agent_id else None,
        session_id=check_id("session_id", session_id) if session_id else None,
        memory_types=(check_type("memory_type", memory_type),) if memory_type else (),
        event_types=(check_type("event_type", event_type),) if event_type else (),
        tags=tuple(dict.fromkeys(check_tags(tag_list))),
        since_ns=parse_since("since", since or "", now),
        until_ns=parse_until(until or "", now),
        limit=effective_limit(limit, LIST_DEFAULT_LIMIT),
        offset=max(offset or 0, 0),
        ascending=order == "asc",
        key=key or None,
        include_superseded=bool(include_superseded),
        metadata=tuple(fields.items()),
    )

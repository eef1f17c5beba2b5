"""Request bodies, validated once at the edge with the reference's messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from memtrace_server.core.errors import BadRequest
from memtrace_server.core.records import MEMORY_TYPES
from memtrace_server.core.timefmt import parse_relative, parse_timestamp
from memtrace_server.core.validation import (
    id_error,
    key_error,
    metadata_filter_error,
    tag_error,
    type_error,
)

CUSTOM_ERROR = "memtrace"


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(CUSTOM_ERROR, message)


def _null_is(default: Any) -> BeforeValidator:
    """JSON null means "not given", as in the reference's Go decoder."""
    return BeforeValidator(lambda v: default if v is None else v)


def _required(field: str) -> AfterValidator:
    def check(value: str) -> str:
        if value == "":
            raise _fail(f"{field} is required")
        return value

    return AfterValidator(check)


def _matches(field: str, rule: Callable[[str, str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        message = rule(field, value) if value else None
        if message:
            raise _fail(message)
        return value

    return AfterValidator(check)


def _check_tags(values: list[str]) -> list[str]:
    for tag in values:
        message = tag_error(tag)
        if message:
            raise _fail(message)
    return values


def _check_memory_type(value: str) -> str:
    if value not in MEMORY_TYPES:
        raise _fail(f"invalid memory_type: {value}")
    return value


def _check_importance(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise _fail(f"invalid importance {value}: must be between 0 and 1")
    return value


def _check_types(field: str) -> AfterValidator:
    def check(values: list[str]) -> list[str]:
        for value in values:
            message = type_error(f"{field[:-1]} '{value}'", value) if value else None
            if message:
                raise _fail(message)
        return values

    return AfterValidator(check)


AgentId = Annotated[str, _null_is(""), _required("agent_id"), _matches("agent_id", id_error)]
OptionalSessionId = Annotated[str, _null_is(""), _matches("session_id", id_error)]
OptionalAgentId = Annotated[str, _null_is(""), _matches("agent_id", id_error)]
Tags = Annotated[list[str], _null_is([]), AfterValidator(_check_tags)]


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    try:
        orjson.dumps(value)
    except TypeError as exc:  # integers beyond 64 bits, for one
        raise _fail(f"invalid JSON object: {exc}") from None
    return value


Metadata = Annotated[dict[str, Any], _null_is({}), AfterValidator(_storable_json)]


def _storable_optional(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else _storable_json(value)


MemoryKey = Annotated[str, _null_is(""), _matches("key", lambda _, v: key_error(v))]


def _check_metadata_filter(value: dict[str, Any]) -> dict[str, Any]:
    message = metadata_filter_error(value)
    if message:
        raise _fail(message)
    return value


MetadataFilter = Annotated[dict[str, Any], _null_is({}), AfterValidator(_check_metadata_filter)]

MAX_OFFSET = 1_000_000_000
SearchMode = Literal["bm25", "hybrid"] | None
MODE_HELP = (
    "Ranking for query: bm25 (words) or hybrid (words and meaning). When omitted: hybrid if "
    "this server has semantic search on, else bm25. The response's mode says which ran; "
    "hybrid on a server without semantic search is a 400."
)
Order = Annotated[Literal["asc", "desc"], _null_is("desc")]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class CreateMemoryRequest(_Body):
    """One memory to store."""

    agent_id: AgentId = Field(
        description="Agent that owns the memory: any id or name matching ^[a-zA-Z][a-zA-Z0-9_-]{0,127}$."
    )
    content: Annotated[str, _null_is(""), _required("content")] = Field(
        description="What to remember."
    )
    memory_type: Annotated[str, _null_is("episodic"), AfterValidator(_check_memory_type)] = Field(
        "episodic", description="One of episodic (default), session, decision, entity."
    )
    event_type: Annotated[
        str, _null_is("general"), _required("event_type"), _matches("event_type", type_error)
    ] = Field("general", description="Application event name (letters, digits, underscores).")
    session_id: OptionalSessionId = Field("", description="Session the memory belongs to.")
    metadata: Metadata = Field(default_factory=dict, description="Any JSON object.")
    tags: Tags = Field(default_factory=list, description="Tags: letters, digits, _ . - (max 64).")
    importance: Annotated[float, _null_is(0.0), AfterValidator(_check_importance)] = Field(
        0.0, description="Importance between 0 and 1 (default 0)."
    )
    dedup_key: Annotated[str, _null_is("")] = Field(
        "", description="Dedup key; derived from agent, event type and content when omitted."
    )
    parent_id: Annotated[str, _null_is("")] = Field("", description="Free-form parent reference.")
    key: MemoryKey = Field(
        "",
        description="A fact that can change: remembering again under the same key (per agent) "
        "makes the new memory current and keeps the previous ones as history. 1 to 200 "
        "characters, no control characters.",
    )
    time: str | None = Field(
        None,
        description="Optional RFC 3339 time for imports and backfills; server time when omitted.",
    )
    expires_at: str | None = Field(
        None, description="RFC 3339 time after which the memory is hidden and purged."
    )
    ttl: str | None = Field(
        None,
        description="Lifetime from now instead of expires_at: 30m, 12h, 7d, 2w (at most 365 days).",
    )

    # The times are checked once here and parsed again where used: the parse of an empty
    # string is free, while private attributes make every model slower to build and read.
    @model_validator(mode="after")
    def _check_times(self) -> CreateMemoryRequest:
        if self.time and parse_timestamp(self.time) is None:
            raise _fail(f"invalid time '{self.time}': expected an RFC 3339 timestamp")
        if self.expires_at and self.ttl:
            raise _fail("give expires_at or ttl, not both")
        if self.expires_at and parse_timestamp(self.expires_at) is None:
            raise _fail(f"invalid expires_at '{self.expires_at}': expected an RFC 3339 timestamp")
        if self.ttl:
            try:
                span = parse_relative(self.ttl)
            except BadRequest as exc:
                raise _fail(f"invalid ttl: {exc.message}") from exc
            if span is None:
                raise _fail(f"invalid ttl '{self.ttl}': use 30m, 12h, 7d or 2w")
        return self

    @property
    def time_ns(self) -> int | None:
        """The client-supplied time in UTC nanoseconds, if any."""
        return parse_timestamp(self.time) if self.time else None

    def expiry_ns(self, now_ns: int) -> int | None:
        """When the memory expires (from ``expires_at`` or ``ttl``), if it does."""
        if self.expires_at:
            return parse_timestamp(self.expires_at)
        span = parse_relative(self.ttl) if self.ttl else None
        return now_ns + span if span is not None else None


class CreateMemoriesRequest(_Body):
    """A batch of memories, stored all together or not at all."""

    memories: list[CreateMemoryRequest] = Field(
        min_length=1, description="Memories to store; duplicates are skipped silently."
    )


def _batch_or_single(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("memories"), list) and value["memories"]:
        return "batch"
    return "single"


CreateMemoryBody = Annotated[
    Annotated[CreateMemoriesRequest, Tag("batch")] | Annotated[CreateMemoryRequest, Tag("single")],
    Discriminator(_batch_or_single),
]


class SearchRequest(_Body):
    """Structured search filters; every field is optional."""

    agent_id: OptionalAgentId = Field("", description="Exact agent id.")
    session_id: OptionalSessionId = Field("", description="Exact session id.")
    memory_types: Annotated[list[str], _null_is([]), _check_types("memory_types")] = Field(
        default_factory=list, description="Any of these memory types."
    )
    event_types: Annotated[list[str], _null_is([]), _check_types("event_types")] = Field(
        default_factory=list, description="Any of these event types."
    )
    tags: Tags = Field(default_factory=list, description="All of these tags (exact membership).")
    content_contains: Annotated[str, _null_is("")] = Field(
        "", description="Case-sensitive substring of the content."
    )
    since: Annotated[str, _null_is("")] = Field(
        "", description="Relative window (30s, 15m, 24h, 7d, 2w) or RFC 3339 lower bound."
    )
    until: Annotated[str, _null_is("")] = Field(
        "", description="Relative (older than) or RFC 3339 upper bound; 'now' means none."
    )
    min_importance: Annotated[float, _null_is(0.0)] = Field(
        0.0, description="Minimum importance, applied when greater than 0."
    )
    limit: Annotated[int, _null_is(0), Field(ge=0, le=MAX_OFFSET)] = Field(
        0, description="Maximum results: default 50 (also for 0), at most 1000."
    )
    offset: Annotated[int, _null_is(0), Field(ge=0, le=MAX_OFFSET)] = Field(
        0, description="Results to skip."
    )
    order: Order = Field("desc", description="asc or desc (default) by time.")
    query: Annotated[str, _null_is("")] = Field(
        "",
        description="Free text: results are ranked by relevance (BM25) after every other filter, "
        "and each carries a score.",
    )
    mode: SearchMode = Field(None, description=MODE_HELP)
    recency_half_life: Annotated[str, _null_is("")] = Field(
        "", description="With query: halve a memory's score per this age, e.g. 7d."
    )
    importance_weight: Annotated[float, _null_is(0.0)] = Field(
        0.0, description="With query: multiply scores by 1 + weight x importance."
    )
    key: MemoryKey = Field("", description="Exactly this memory key.")
    include_superseded: Annotated[bool, _null_is(False)] = Field(
        False, description="Also older versions of keyed memories (hidden by default)."
    )
    metadata: MetadataFilter = Field(
        default_factory=dict,
        description="Top-level metadata fields that must equal these values exactly "
        "(strings, numbers, booleans, null; at most 16 fields).",
    )
    explain: Annotated[bool, _null_is(False)] = Field(
        False,
        description="Add an explanation to each result: text score, semantic similarity "
        "(hybrid), recency and importance factors and the final score.",
    )


class ContextRequest(_Body):
    """Options of a session context."""

    since: Annotated[str, _null_is("")] = Field(
        "", description="Window: relative (default 24h) or an RFC 3339 lower bound."
    )
    include_types: Annotated[list[str], _null_is([]), _check_types("include_types")] = Field(
        default_factory=list, description="Only these memory types."
    )
    max_tokens: Annotated[int, _null_is(0), Field(le=MAX_OFFSET)] = Field(
        0,
        description="Token budget (estimate: characters / 4, rounded up); oldest lines dropped to fit. 0 = none.",
    )
    query: Annotated[str, _null_is("")] = Field(
        "",
        description="Free text: the most relevant memories of the window fill the budget "
        "(least relevant dropped first). Without it the layout is the reference's.",
    )
    mode: SearchMode = Field(None, description=MODE_HELP)


class RegisterAgentRequest(_Body):
    """An agent to register."""

    name: Annotated[str, _null_is(""), _required("name")] = Field(
        description="Unique name within the org."
    )
    description: Annotated[str, _null_is("")] = Field("", description="What the agent does.")
    config: Metadata = Field(default_factory=dict, description="Any JSON object.")


class CreateSessionRequest(_Body):
    """A session to open for an agent."""

    agent_id: Annotated[str, _null_is(""), _required("agent_id")] = Field(
        description="Agent id or name; an unknown valid id registers the agent on the fly."
    )
    metadata: Metadata = Field(default_factory=dict, description="Any JSON object.")


class UpdateSessionRequest(_Body):
    """Changes to a session."""

    status: Literal["active", "closed"] | None = Field(
        None, description="active or closed; reopening clears closed_at."
    )
    metadata: Annotated[dict[str, Any] | None, AfterValidator(_storable_optional)] = Field(
        None, description="Keys merged into the stored metadata; a null value removes a key."
    )


class EraseRequest(SearchRequest):
    """Filters of the memories to erase; at least one is required."""

    dry_run: Annotated[bool, _null_is(False)] = Field(
        False, description="Only count what would be erased."
    )


class UpdateAgentRequest(_Body):
    """Changes to an agent."""

    description: str | None = Field(None, description="New description.")
    config: Annotated[dict[str, Any] | None, AfterValidator(_storable_optional)] = Field(
        None, description="Keys merged into the stored config; a null value removes a key."
    )

"""A local stand-in for the Chat Completions endpoint, for demos and tests without a network.

It is not a language model: it answers from a queue of scripted turns when one is
given, and otherwise with a few keyword rules that exercise the Memtrace tools the way
a model would. Every request body is recorded in ``requests``.

    server = ScriptedChatServer().start()
    client = OpenAI(api_key="scripted", base_url=server.base_url)
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ToolCall = tuple[str, dict[str, Any]]


class ScriptedChatServer:
    """``POST /v1/chat/completions`` on 127.0.0.1, answered from a script or simple rules."""

    def __init__(self, script: list[str | list[ToolCall]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedChatServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self.send_error(404)
                    return
                payload = json.dumps(owner.answer(request)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:  # keep test and demo output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(request)
            turn = self.script.pop(0) if self.script else _rules(request)
            number = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(turn, str):
            message["content"] = turn
            finish = "stop"
        else:
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(turn)
            ]
            finish = "tool_calls"
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _rules(request: dict[str, Any]) -> str | list[ToolCall]:
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    offered = {
        t["function"]["name"] for t in request.get("tools") or [] if t.get("type") == "function"
    }
    if last.get("role") == "tool":
        return _summarise_tool_results(messages)
    text = _text(last)
    lower = text.lower()
    calls: list[ToolCall] = []
    if offered and re.search(r"\b(my name is|i prefer|i like|i am|i'm|i work)\b", lower):
        calls.append(
            (
                "memtrace_remember",
                {"content": f"User said: {text}", "tags": ["user_fact"], "importance": 0.8},
            )
        )
    if offered and re.search(r"\b(remember|recall|know about me)\b", lower) and not calls:
        calls.append(("memtrace_recall", {"since": "24h"}))
    if offered and re.search(r"\b(recommend|suggest|should)\b", lower):
        calls.append(("memtrace_search", {"content_contains": "prefer"}))
        calls.append(
            (
                "memtrace_decide",
                {
                    "decision": "Recommend Python with FastAPI and PostgreSQL",
                    "reasoning": "Matches the stated preferences",
                },
            )
        )
    if calls and {name for name, _ in calls} <= offered:
        return calls
    system = next((_text(m) for m in messages if m.get("role") == "system"), "")
    if "## Session Context" in system:
        return "Here is what memory holds:\n" + system[system.index("## Session Context") :][:600]
    return f"(scripted reply) {text[:200]}"


def _summarise_tool_results(messages: list[dict[str, Any]]) -> str:
    lines = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        try:
            result = json.loads(m.get("content") or "{}")
        except ValueError:
            result = {"text": m.get("content")}
        if isinstance(result, dict) and result.get("duplicate"):
            lines.append("I already had that in memory.")
        elif isinstance(result, dict) and result.get("stored"):
            lines.append("I'll remember that.")
        elif isinstance(result, dict) and result.get("logged"):
            lines.append("Decision logged.")
        elif isinstance(result, dict) and "memories" in result:
            found = [x["content"] for x in result["memories"]]
            lines.append("I recall: " + ("; ".join(found) if found else "nothing yet."))
        else:
            lines.append(f"Tool said: {str(result)[:200]}")
    return " ".join(reversed(lines))

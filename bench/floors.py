"""The two floors the benchmarks divide by, served exactly as ``memtrace serve`` serves.

    python bench/floors.py raw --port 9201
    python bench/floors.py framework --port 9202 --data-dir DIR

``raw``: a bare ASGI callable answering a fixed small JSON (201 to a POST) — the limit of
uvicorn, its event loop and HTTP parser on this machine. ``framework``: our own app with a
no-op route at ``/api/v1/bench/noop`` behind the same middleware and the same auth
dependency, but no memory work — what the framework and authentication cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fastapi import Depends, Response

from memtrace_server.api.app import create_app
from memtrace_server.api.deps import reader, writer
from memtrace_server.cli import run_app
from memtrace_server.config import load_settings
from memtrace_server.service.auth import Principal

BODY = b'{"ok":true}'


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with a fixed JSON body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    status = 201 if scope["method"] == "POST" else 200
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def framework_app(settings: Any) -> Any:
    """Our app plus no-op routes that authenticate and return."""
    app = create_app(settings)

    @app.post("/api/v1/bench/noop", status_code=201, include_in_schema=False)
    async def noop_post(principal: Principal = Depends(writer)) -> Response:
        return Response(BODY, 201, media_type="application/json")

    @app.get("/api/v1/bench/noop", include_in_schema=False)
    async def noop_get(principal: Principal = Depends(reader)) -> Response:
        return Response(BODY, media_type="application/json")

    return app


def main() -> None:
    """Serve one floor."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("raw", "framework"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    settings = load_settings(None, host="127.0.0.1", port=args.port, data_dir=args.data_dir)
    run_app(raw_app if args.kind == "raw" else framework_app(settings), settings)


if __name__ == "__main__":
    main()

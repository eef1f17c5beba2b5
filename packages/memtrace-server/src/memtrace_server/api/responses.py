"""Fast JSON responses for bodies the server built itself (no re-validation)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBody(Response):
    """``application/json`` encoded with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content``; non-str dict keys are allowed for counters."""
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def json_response(content: Any, status_code: int = 200) -> JSONBody:
    """A JSON response with the given status."""
    return JSONBody(content, status_code=status_code)

"""Reading request bodies the way every JSON route of the widget API expects them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from backend import jsondata


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; anything else is 400 `malformed_body`, nesting deeper than
    `jsondata.MAX_DEPTH` 400 `json_too_deep` (a deep body would otherwise be a RecursionError)."""
    return jsondata.load_object(await request.body())

"""Reading request bodies the way every JSON route of the widget API expects them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from backend.errors import MalformedBody


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; anything else is 400 `malformed_body`."""
    try:
        body = await request.json()
    except ValueError:
        raise MalformedBody("the body is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedBody("the body must be a JSON object")
    return body

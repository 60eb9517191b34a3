"""The account's email platform, as the widget's settings see it: connect with a key (checked
live), choose the audience, disconnect; list audiences and segments, create a segment. The
workflow itself is `backend/connections.py`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import connections
from backend.errors import Unprocessable
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.routes.json_body import json_object
from backend.routes.widget.account import answer


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str | int):
        raise Unprocessable(f"`{name}` must be a string", code="invalid_request")
    return str(value).strip() or None if value is not None else None


@widget_endpoint(write=True)
async def put_provider(request: Request, ctx: WidgetContext) -> Response:
    body = await json_object(request)
    await connections.connect(request.app.state.resources, ctx.account_id,
                              family=_text(body, "kind") or "", api_key=_text(body, "api_key"),
                              list_id=_text(body, "list_id"))
    return await answer(request, ctx)


@widget_endpoint(write=True)
async def delete_provider(request: Request, ctx: WidgetContext) -> Response:
    """Disconnect the platform; the mapping is kept."""
    await connections.disconnect(request.app.state.resources, ctx.account_id)
    return await answer(request, ctx)


@widget_endpoint()
async def get_lists(request: Request, ctx: WidgetContext) -> Response:
    provider = await connections.connected_provider(request.app.state.resources, ctx.account_id)
    return JSONResponse([{"id": a.id, "name": a.name, "member_count": a.member_count}
                         for a in await provider.list_lists()])


@widget_endpoint()
async def get_segments(request: Request, ctx: WidgetContext) -> Response:
    provider = await connections.connected_provider(request.app.state.resources, ctx.account_id)
    return JSONResponse([{"id": s.id, "name": s.name} for s in await provider.list_segments()])


@widget_endpoint(write=True)
async def post_segment(request: Request, ctx: WidgetContext) -> Response:
    name = _text(await json_object(request), "name")
    if not name or len(name) > 100:
        raise Unprocessable("a segment name of 1 to 100 characters is required",
                            code="invalid_segment")
    provider = await connections.connected_provider(request.app.state.resources, ctx.account_id)
    segment = await provider.create_segment(name)
    return JSONResponse({"id": segment.id, "name": segment.name})


routes = [
    Route("/api/widget/provider", put_provider, methods=["PUT"]),
    Route("/api/widget/provider", delete_provider, methods=["DELETE"]),
    Route("/api/widget/provider/lists", get_lists, methods=["GET"]),
    Route("/api/widget/provider/segments", get_segments, methods=["GET"]),
    Route("/api/widget/provider/segments", post_segment, methods=["POST"]),
]

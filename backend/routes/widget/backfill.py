"""`POST /api/widget/backfill` starts the initial sync of existing leads in mapped stages (a dry
run first, to preview it), `GET /api/widget/backfill` follows its progress."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import backfills, repository
from backend.errors import Unprocessable
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import Backfill
from backend.routes.json_body import json_object
from backend.routes.widget.account import iso
from backend.sync import backfill


def _choice(body: dict[str, Any]) -> tuple[bool, str]:
    dry_run = body.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise Unprocessable("dry_run must be true or false", code="invalid_backfill")
    choice = body.get("new_subscribers_as", "subscribed")
    if choice not in backfill.CHOICES:
        raise Unprocessable('new_subscribers_as must be "subscribed", "unconfirmed" or "skip"',
                            code="invalid_backfill")
    return dry_run, choice


@widget_endpoint(write=True)
async def post_backfill(request: Request, ctx: WidgetContext) -> Response:
    dry_run, choice = _choice(await json_object(request))
    resources = request.app.state.resources
    async with resources.sessions() as session:
        rules = await repository.get_mapping(session, ctx.account_id)
        connection = await repository.get_esp_connection(session, ctx.account_id)
    if not rules or connection is None or not connection.api_key_enc:
        raise Unprocessable("connect an email platform and save a mapping first",
                            code="invalid_backfill")
    backfill_id = await backfill.start(resources, ctx.account_id, dry_run=dry_run,
                                       new_subscribers_as=choice)
    return JSONResponse({"backfill_id": backfill_id}, status_code=202)


def _body(run: Backfill | None) -> dict[str, Any]:
    if run is None:
        return {"state": "idle", "dry_run": None, "total": 0, "done": 0, **backfill.empty_counts()}
    return {"backfill_id": run.id, "state": run.state, "dry_run": run.dry_run,
            "new_subscribers_as": run.new_subscribers_as, "total": run.total, "done": run.done,
            **backfill.empty_counts(), **run.counts, "error": run.error,
            "started_at": iso(run.started_at), "finished_at": iso(run.finished_at)}


@widget_endpoint()
async def get_backfill(request: Request, ctx: WidgetContext) -> Response:
    async with request.app.state.resources.sessions() as session:
        return JSONResponse(_body(await backfills.latest_backfill(session, ctx.account_id)))


routes = [
    Route("/api/widget/backfill", post_backfill, methods=["POST"]),
    Route("/api/widget/backfill", get_backfill, methods=["GET"]),
]

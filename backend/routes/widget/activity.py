"""`GET /api/widget/activity`: the account's activity log, newest first, in the admin's words.
Non-admin tokens see masked addresses wherever an address shows."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import activity_log
from backend.activity_log import ACTIVITY_CAP
from backend.errors import BadRequest
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import Activity
from backend.routes.widget.account import iso
from backend.security import mask_email

DEFAULT_LIMIT = 50
_OMITTED_WHEN_NULL = ("lead_id", "contact_id", "detail")


def shown(text: str | None, email: str | None, reveal: bool) -> str | None:
    """The address masked wherever it appears: vendors quote it in their refusals."""
    if reveal or not text or not email:
        return text
    return re.sub(re.escape(email), mask_email(email) or "", text, flags=re.IGNORECASE)


def shown_email(email: str | None, reveal: bool) -> str | None:
    return email if reveal else mask_email(email)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= ACTIVITY_CAP:
        raise BadRequest(f"limit must be a whole number from 1 to {ACTIVITY_CAP}",
                         code="invalid_limit")
    return int(raw)


def _activity_body(row: Activity, reveal: bool) -> dict[str, Any]:
    body = {"at": iso(row.at), "direction": row.direction, "lead_id": row.lead_id,
            "contact_id": row.contact_id, "email": shown_email(row.email, reveal),
            "summary": shown(row.summary, row.email, reveal), "outcome": row.outcome,
            "detail": shown(row.detail, row.email, reveal)}
    return {k: v for k, v in body.items() if v is not None or k not in _OMITTED_WHEN_NULL}


@widget_endpoint()
async def get_activity(request: Request, ctx: WidgetContext) -> Response:
    limit = _limit(request.query_params.get("limit"))
    async with request.app.state.resources.sessions() as session:
        rows = await activity_log.list_activity(session, ctx.account_id, limit)
    return JSONResponse([_activity_body(row, ctx.identity.is_admin) for row in rows])


routes = [Route("/api/widget/activity", get_activity, methods=["GET"])]

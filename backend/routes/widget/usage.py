"""`GET /api/widget/activity/hourly`: the account's synced (`ok`), skipped and failed entries per
UTC hour over the last 48 hours, oldest first, hours without entries included as zeros, for the
activity tab's chart."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import activity_hourly
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import utcnow
from backend.routes.widget.account import iso


@widget_endpoint()
async def get_hourly_activity(request: Request, ctx: WidgetContext) -> Response:
    async with request.app.state.resources.reads() as session:
        series = await activity_hourly.series(session, [ctx.account_id], utcnow())
    return JSONResponse([{"hour": iso(row.hour), "ok": row.ok, "skipped": row.skipped,
                          "failed": row.failed} for row in series[ctx.account_id]])


routes = [Route("/api/widget/activity/hourly", get_hourly_activity, methods=["GET"])]

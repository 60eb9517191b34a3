"""`/admin`: the operator's dashboard (HTTP Basic with ADMIN_PASSWORD; absent when unset).

Accounts with token health, queue depth, calls and 429s per vendor this hour and the last, the
newest backfill and a chart of the last 48 hours' activity; dead letters with a retry button.
Plain HTML forms; the retry form carries a signed, expiring token so a foreign page cannot post it.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from backend import activity_hourly, jobs, overview, repository
from backend.errors import BadRequest, MailsyncError, NotFound
from backend.models import utcnow
from backend.routes import activity_chart
from backend.security import constant_time_equals
from backend.templating import TEMPLATES

CSRF_PURPOSE = "admin-retry"
CSRF_MAX_AGE = 3600


class AdminAuthRequired(MailsyncError):
    status_code = 401
    code = "admin_auth_required"


def _check_auth(request: Request) -> None:
    password = request.app.state.resources.settings.admin_password
    if password is None:
        raise NotFound("Not Found")
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        _, _, given = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    if scheme.lower() != "basic" or not constant_time_equals(given, password.reveal()):
        raise AdminAuthRequired("the operator password is required")


async def dashboard(request: Request) -> Response:
    try:
        _check_auth(request)
    except AdminAuthRequired:
        return Response("Authentication required", status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="mailsync admin"'})
    resources, now = request.app.state.resources, utcnow()
    async with resources.sessions() as session:
        accounts = await repository.list_all_accounts(session)
        ids = [account.id for account in accounts]
        depth = await jobs.depth_by_account(session)
        tokens = {a.id: await repository.get_kommo_token_row(session, a.id) for a in accounts}
        views = await overview.load(session, ids, now)
        hourly = await activity_hourly.series(session, ids, now)
        dead = await jobs.dead_jobs(session)
    return TEMPLATES.TemplateResponse(request, "admin.html", {
        "accounts": accounts, "depth": depth, "tokens": tokens, "dead": dead, "now": now,
        "views": views, "charts": {i: activity_chart.svg(h) for i, h in hourly.items()
                                   if any(x.ok or x.skipped or x.failed for x in h)},
        "csrf": resources.signer.sign(CSRF_PURPOSE, "retry")})


async def retry(request: Request) -> Response:
    _check_auth(request)
    form = await request.form()
    resources = request.app.state.resources
    resources.signer.unsign(CSRF_PURPOSE, str(form.get("csrf", "")), max_age=CSRF_MAX_AGE)
    try:
        account_id = int(str(form.get("account_id", "")))
    except ValueError:
        raise BadRequest("account_id must be a number") from None
    async with resources.sessions() as session, session.begin():
        await jobs.retry_dead(session, account_id, int(request.path_params["job_id"]))
    return RedirectResponse("/admin", status_code=303)


routes = [
    Route("/admin", dashboard, methods=["GET"]),
    Route("/admin/jobs/{job_id:int}/retry", retry, methods=["POST"]),
]

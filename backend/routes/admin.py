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
from backend.security import secret_matches
from backend.templating import TEMPLATES
from backend.throttle import Throttled, caller, guards

CSRF_PURPOSE = "admin-retry"
CSRF_MAX_AGE = 3600


class AdminAuthRequired(MailsyncError):
    status_code = 401
    code = "admin_auth_required"


def _check_auth(request: Request) -> None:
    """The operator password, with guessing slowed down (docs/SECURITY.md): 5 wrong passwords
    from one address in a minute, or 50 from all, and /admin answers 429 until the minute is up.
    Only requests that carry credentials count (a browser's first, bare request does not)."""
    password = request.app.state.resources.settings.admin_password
    if password is None:
        raise NotFound("Not Found")
    limits = guards(request)
    who = caller(request)
    waited = max(limits.admin_failures_in_all.wait("all"), limits.admin_failures.wait(who))
    if waited > 0:
        raise Throttled("too many wrong passwords; try again in a minute", retry_after=waited)
    header = request.headers.get("authorization")
    if header is None:
        raise AdminAuthRequired("the operator password is required")
    scheme, _, encoded = header.partition(" ")
    try:
        _, _, given = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    # Both checks always run: the answer's timing does not tell which one failed.
    right = secret_matches(given, password.reveal())
    if scheme.lower() != "basic" or not right:
        limits.admin_failures.add(who)
        limits.admin_failures_in_all.add("all")
        raise AdminAuthRequired("the operator password is required")


def _challenge(exc: MailsyncError) -> Response:
    if isinstance(exc, Throttled):
        return Response("Too many wrong passwords; try again in a minute.", status_code=429,
                        headers={"Retry-After": str(exc.retry_after)})
    return Response("Authentication required", status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="mailsync admin"'})


async def dashboard(request: Request) -> Response:
    try:
        _check_auth(request)
    except (AdminAuthRequired, Throttled) as exc:
        return _challenge(exc)
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

"""The widget's sync routes (ARCHITECTURE §3): the admin's mapping, the activity log, the card
panel's contact state and "resync now". Every query is scoped by the account of the verified token.

The mapping is checked against what is live — the account's Kommo pipelines and the ESP's
segments — before anything is stored, so a saved mapping never names a stage or segment that did
not exist when it was saved. Non-admin tokens see masked addresses everywhere an address shows.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import providers, repository
from backend.errors import BadRequest, NotFound, Unprocessable
from backend.kommo.client import KommoClient
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import Activity, ContactState, MappingRule
from backend.repository import ACTIVITY_CAP
from backend.routes.bodies import json_object
from backend.security import mask_email
from backend.sync import mapping
from backend.sync.inbox import Delivery
from backend.sync.jobs import JobSpec
from backend.views import account_body, iso

DEFAULT_ACTIVITY_LIMIT = 50
MAX_ID = 2**31 - 1  # Kommo ids are stored in 32-bit columns: a larger one cannot be ours
RESYNC_KINDS = {"lead_id": "reconcile_lead", "contact_id": "reconcile_contact"}
_OMITTED_WHEN_NULL = ("lead_id", "contact_id", "detail")


def _shown(text: str | None, email: str | None, reveal: bool) -> str | None:
    """The address masked wherever it appears: vendors quote it in their refusals."""
    if reveal or not text or not email:
        return text
    return re.sub(re.escape(email), mask_email(email) or "", text, flags=re.IGNORECASE)


def _email(email: str | None, reveal: bool) -> str | None:
    return email if reveal else mask_email(email)


# --- mapping -------------------------------------------------------------------------------


@widget_endpoint(write=True)
async def put_mapping(request: Request, ctx: WidgetContext) -> Response:
    services = request.app.state.services
    body = await json_object(request)
    rules = mapping.parse_rules(body.get("rules"))
    mapping.parse_options(body.get("options"))  # shape first: a typo costs no outbound call
    async with services.sessions() as session:
        connection = await repository.get_esp_connection(session, ctx.account_id)
    if connection is None or not connection.api_key_enc:  # an erased key is no connection
        raise mapping.invalid("connect an email platform first")
    pipelines = await KommoClient(services, ctx.account_id, host=ctx.account.host).pipelines()
    segments = await providers.build(connection, services).list_segments()
    segment_ids = [s.id for s in segments]
    mapping.check_against(rules, pipelines, segment_ids)
    options = mapping.parse_options(body.get("options"), segment_ids)
    async with services.sessions() as session, session.begin():
        await repository.replace_mapping(session, ctx.account_id, [
            MappingRule(account_id=ctx.account_id, pipeline_id=r.pipeline_id,
                        status_id=r.status_id, action=r.action, segment_id=r.segment_id)
            for r in rules])
        await repository.save_options(session, ctx.account_id, options,
                                      mapping.labels(rules, options, pipelines, segments))
    async with services.sessions() as session:
        return JSONResponse(await account_body(session, ctx.account))


# --- activity ------------------------------------------------------------------------------


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_ACTIVITY_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= ACTIVITY_CAP:
        raise BadRequest(f"limit must be a whole number from 1 to {ACTIVITY_CAP}",
                         code="invalid_limit")
    return int(raw)


def _activity_body(row: Activity, reveal: bool) -> dict[str, Any]:
    body = {"at": iso(row.at), "direction": row.direction, "lead_id": row.lead_id,
            "contact_id": row.contact_id, "email": _email(row.email, reveal),
            "summary": _shown(row.summary, row.email, reveal), "outcome": row.outcome,
            "detail": _shown(row.detail, row.email, reveal)}
    return {k: v for k, v in body.items() if v is not None or k not in _OMITTED_WHEN_NULL}


@widget_endpoint()
async def get_activity(request: Request, ctx: WidgetContext) -> Response:
    limit = _limit(request.query_params.get("limit"))
    async with request.app.state.services.sessions() as session:
        rows = await repository.list_activity(session, ctx.account_id, limit)
    return JSONResponse([_activity_body(row, ctx.identity.is_admin) for row in rows])


# --- contacts ------------------------------------------------------------------------------


def _contact_body(state: ContactState, reveal: bool) -> dict[str, Any]:
    return {"email": _email(state.email, reveal), "esp_status": state.esp_status,
            "segments": list(state.segments), "last_synced_at": iso(state.last_synced_at),
            "last_error": _shown(state.last_error, state.email, reveal)}


@widget_endpoint()
async def get_contact(request: Request, ctx: WidgetContext) -> Response:
    contact_id: int = request.path_params["contact_id"]
    state = None
    if contact_id <= MAX_ID:  # the database refuses an out-of-range id rather than finding nothing
        async with request.app.state.services.sessions() as session:
            state = await repository.get_contact_state(session, ctx.account_id, contact_id)
    if state is None:
        raise NotFound("mailsync has not synced this contact", code="contact_not_found")
    return JSONResponse(_contact_body(state, ctx.identity.is_admin))


# --- resync --------------------------------------------------------------------------------


def _resync_target(body: dict[str, Any]) -> tuple[str, int]:
    given = [name for name in RESYNC_KINDS if body.get(name) is not None]
    if len(given) != 1:
        raise Unprocessable("send either lead_id or contact_id", code="invalid_resync")
    value = body[given[0]]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Unprocessable(f"{given[0]} must be a positive whole number", code="invalid_resync")
    return given[0], value


# Not `write=True`: any user of the account may resync. It changes no setting; it only applies
# the admin's mapping now instead of at the next change in Kommo.
@widget_endpoint()
async def post_resync(request: Request, ctx: WidgetContext) -> Response:
    field, entity_id = _resync_target(await json_object(request))
    account_id, kind = ctx.account_id, RESYNC_KINDS[field]
    # The webhook's coalesce key: a pending job for this lead or contact absorbs the request.
    job = JobSpec(account_id, kind, f"{kind}:{account_id}:{entity_id}",
                  {field: entity_id, "action": "resync"})
    # A fresh dedupe key: every click is a new request, never mistaken for a repeat delivery.
    delivery = Delivery(source="widget", account_id=account_id,
                        dedupe_key=f"resync:{account_id}:{uuid.uuid4().hex}",
                        body=json.dumps({field: entity_id, "user_id": ctx.identity.user_id}),
                        jobs=(job,))
    await request.app.state.services.inbox.submit(delivery)
    return JSONResponse({"queued": True}, status_code=202)


routes = [
    Route("/api/widget/mapping", put_mapping, methods=["PUT"]),
    Route("/api/widget/activity", get_activity, methods=["GET"]),
    Route("/api/widget/contacts/{contact_id:int}", get_contact, methods=["GET"]),
    Route("/api/widget/resync", post_resync, methods=["POST"]),
]

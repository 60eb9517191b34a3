"""The card panel's routes: `GET /api/widget/contacts/{id}` (what mailsync last wrote for the
contact) and `POST /api/widget/resync` (apply the mapping to a lead or contact now)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import contact_states
from backend.errors import NotFound, Unprocessable
from backend.inbox import Delivery
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import ContactState
from backend.routes.json_body import json_object
from backend.routes.widget.account import iso
from backend.routes.widget.activity import shown, shown_email
from backend.sync.work import ReconcileContact, ReconcileLead

MAX_ID = 2**31 - 1  # Kommo ids are stored in 32-bit columns: a larger one cannot be ours
ADDRESS_CHANGED = "email_changed"  # what the card shows for an address the ESP moved elsewhere


def _contact_body(state: ContactState, reveal: bool) -> dict[str, Any]:
    return {"email": shown_email(state.email, reveal),
            "esp_status": ADDRESS_CHANGED if state.address_changed else state.esp_status,
            "segments": list(state.segments), "last_synced_at": iso(state.last_synced_at),
            "last_error": shown(state.last_error, state.email, reveal)}


@widget_endpoint()
async def get_contact(request: Request, ctx: WidgetContext) -> Response:
    contact_id: int = request.path_params["contact_id"]
    state = None
    if contact_id <= MAX_ID:  # the database refuses an out-of-range id rather than finding nothing
        async with request.app.state.resources.sessions() as session:
            state = await contact_states.get_contact_state(session, ctx.account_id, contact_id)
    if state is None:
        raise NotFound("mailsync has not synced this contact", code="contact_not_found")
    return JSONResponse(_contact_body(state, ctx.identity.is_admin))


def _resync_target(body: dict[str, Any]) -> ReconcileLead | ReconcileContact:
    given = [name for name in ("lead_id", "contact_id") if body.get(name) is not None]
    if len(given) != 1:
        raise Unprocessable("send either lead_id or contact_id", code="invalid_resync")
    value = body[given[0]]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Unprocessable(f"{given[0]} must be a positive whole number", code="invalid_resync")
    if given[0] == "lead_id":
        return ReconcileLead(lead_id=value, action="resync")
    return ReconcileContact(contact_id=value, action="resync")


# Not `write=True`: any user of the account may resync. It changes no setting; it only applies
# the admin's mapping now instead of at the next change in Kommo.
@widget_endpoint()
async def post_resync(request: Request, ctx: WidgetContext) -> Response:
    job = _resync_target(await json_object(request)).to_spec(ctx.account_id)
    # A fresh dedupe key: every click is a new request, never mistaken for a repeat delivery.
    # The job's coalesce key is the webhook's: a pending job for this lead or contact absorbs it.
    delivery = Delivery(source="widget", account_id=ctx.account_id,
                        dedupe_key=f"resync:{ctx.account_id}:{uuid.uuid4().hex}",
                        body=json.dumps({**job.payload, "user_id": ctx.identity.user_id}),
                        jobs=(job,))
    await request.app.state.resources.inbox.submit(delivery)
    return JSONResponse({"queued": True}, status_code=202)


routes = [
    Route("/api/widget/contacts/{contact_id:int}", get_contact, methods=["GET"]),
    Route("/api/widget/resync", post_resync, methods=["POST"]),
]

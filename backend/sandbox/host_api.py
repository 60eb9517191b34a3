"""What the sandbox page reads and does besides the widget: the pipeline board, a lead's card
(contact, tags and notes from the simulated Kommo), moving a lead (the real form-encoded Kommo
webhook), the simulated ESPs' segments and members, and unsubscribing an address there (the
real signed MailerLite webhook or Mailchimp form webhook).

It also answers the same-origin Kommo API calls a widget makes from inside Kommo
(`/api/v4/leads/{id}`, `/api/v4/contacts/{id}`, pipelines, account) for the demo account.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import repository
from backend.sandbox import kommo_render as render
from backend.sandbox.kommo_store import Account, Contact, KommoProblem, Lead
from backend.sandbox.mailchimp import md5
from backend.sandbox.mailchimp import stamp as mailchimp_stamp
from backend.sandbox.mailerlite import now_text

NO_CACHE = {"Cache-Control": "no-store"}


def _world(request: Request) -> Any:
    return request.app.state.world


def _account(request: Request) -> Account:
    w = _world(request)
    return w.kommo.store.account(w.demo.account_id)


def _lead(request: Request) -> Lead:
    try:
        return _world(request).kommo.store.lead(_account(request).id, request.path_params["id"])
    except KommoProblem as problem:
        raise HTTPException(404, problem.detail) from None


def _main_contact(account: Account, lead: Lead) -> Contact | None:
    ids = [cid for cid, is_main in lead.contacts if is_main] or [cid for cid, _ in lead.contacts]
    return account.contacts.get(ids[0]) if ids else None


def _lead_row(request: Request, lead: Lead) -> dict[str, Any]:
    contact = _main_contact(_account(request), lead)
    return {"id": lead.id, "name": lead.name, "price": lead.price, "status_id": lead.status_id,
            "pipeline_id": lead.pipeline_id, "company": _world(request).demo.companies.get(lead.id),
            "contact": None if contact is None else {
                "id": contact.id, "name": contact.name,
                "email": contact.emails[0][0] if contact.emails else None,
                "tags": [t["name"] for t in contact.tags]}}


async def board(request: Request) -> Response:
    account = _account(request)
    pipeline = account.pipelines[0]
    stages = [{"id": s["id"], "name": s["name"], "color": s["color"]}
              for s in pipeline["_embedded"]["statuses"]]
    leads = [_lead_row(request, lead) for lead in account.leads.values()]
    return JSONResponse({"pipeline": {"id": pipeline["id"], "name": pipeline["name"], "stages": stages},
                         "leads": leads}, headers=NO_CACHE)


async def lead_card(request: Request) -> Response:
    """The card's left side: the lead, its main contact and the notes on both, newest first."""
    account, lead = _account(request), _lead(request)
    row = _lead_row(request, lead)
    targets = {("leads", lead.id)} | {("contacts", cid) for cid, _ in lead.contacts}
    notes = [{"id": n["id"], "entity": n["entity_type"], "text": (n.get("params") or {}).get("text", ""),
              "type": n.get("note_type"), "created_at": n["created_at"]}
             for n in account.notes if (n["entity_type"], n.get("entity_id")) in targets]
    return JSONResponse(row | {"notes": sorted(notes, key=lambda n: -n["id"])}, headers=NO_CACHE)


async def move_lead(request: Request) -> Response:
    """Kommo moves the lead and POSTs `leads[status]` to every subscribed webhook (ours)."""
    lead = _lead(request)
    try:
        status_id = int((await request.json())["status_id"])
        sent = await _world(request).kommo.change_stage(lead.account_id, lead.id, status_id)
    except (KeyError, TypeError, ValueError):
        raise HTTPException(400, "send {\"status_id\": <stage id>}") from None
    except KommoProblem as problem:
        raise HTTPException(400, problem.detail) from None
    return JSONResponse({"lead": _lead_row(request, lead),
                         "deliveries": [{"url": d.url, "status": d.status} for d in sent]})


async def esp(request: Request) -> Response:
    """Both simulated platforms, segment by segment, and which one the demo account connected."""
    w = _world(request)
    async with w.backend.state.resources.reads() as session:
        connection = await repository.get_esp_connection(session, w.demo.account_id)
    return JSONResponse({"connected": connection.kind if connection else None,
                         "list_id": connection.list_id if connection else None,
                         "mailerlite": _mailerlite(w.mailerlite), "mailchimp": _mailchimp(w.mailchimp)},
                        headers=NO_CACHE)


def _mailerlite(sandbox: Any) -> dict[str, Any]:
    state = sandbox.state
    member = lambda sub: {"email": sub["email"], "status": sub["status"]}  # noqa: E731
    groups = [{"id": g["id"], "name": g["name"],
               "members": [member(s) for s in state.subscribers.values()
                           if g["id"] in state.memberships[s["id"]]]}
              for g in state.groups.values()]
    ungrouped = [member(s) for s in state.subscribers.values() if not state.memberships[s["id"]]]
    return {"segments": groups, "ungrouped": ungrouped}


def _mailchimp(sandbox: Any) -> dict[str, Any]:
    audiences = []
    for audience in sandbox.audiences.values():
        members = list(audience.members.values())
        tags = [{"id": s["id"], "name": s["name"],
                 "members": [{"email": m["email_address"], "status": m["status"]}
                             for m in members if s["name"] in m["tags"]]}
                for s in audience.segments.values()]
        untagged = [{"email": m["email_address"], "status": m["status"]} for m in members if not m["tags"]]
        audiences.append({"id": audience.id, "name": audience.name, "segments": tags,
                          "ungrouped": untagged})
    return {"audiences": audiences}


async def unsubscribe(request: Request) -> Response:
    """The subscriber clicks "unsubscribe" in an email: the platform records it and tells its
    webhooks (mailsync's among them) the way it really does."""
    w, body = _world(request), await request.json()
    email = str(body.get("email") or "").strip().lower()
    if body.get("kind") == "mailerlite":
        statuses = await _unsubscribe_mailerlite(w, email)
    elif body.get("kind") == "mailchimp":
        statuses = await _unsubscribe_mailchimp(w, str(body.get("list_id") or ""), email)
    else:
        raise HTTPException(400, "kind must be mailerlite or mailchimp")
    return JSONResponse({"email": email, "deliveries": statuses})


async def _unsubscribe_mailerlite(w: Any, email: str) -> list[int]:
    sub = w.mailerlite.state.by_email(email)
    if sub is None:
        raise HTTPException(404, f"{email} is not a MailerLite subscriber")
    sub.update(status="unsubscribed", unsubscribed_at=now_text(), updated_at=now_text())
    answers = await w.mailerlite.deliver("subscriber.unsubscribed", email, client=w.client)
    return [a.status_code for a in answers]


async def _unsubscribe_mailchimp(w: Any, list_id: str, email: str) -> list[int]:
    audience = w.mailchimp.audiences.get(list_id)
    member = audience.members.get(md5(email)) if audience else None
    if member is None:
        raise HTTPException(404, f"{email} is not in Mailchimp audience {list_id}")
    member.update(status="unsubscribed", last_changed=mailchimp_stamp())
    answers = await w.mailchimp.deliver(list_id, "unsubscribe", {
        "id": member["id"], "email": email, "email_type": "html", "reason": "manual",
        "ip_opt": "127.0.0.1", "web_id": "118562949"}, client=w.client)
    return [a.status_code for a in answers]


# --- same-origin Kommo API, as the widget calls it from inside Kommo ---------------------------


def _kommo(handler):
    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(handler(request), media_type="application/hal+json", headers=NO_CACHE)
        except KommoProblem as problem:
            return JSONResponse(problem.body(), status_code=problem.status,
                                media_type="application/problem+json")

    return endpoint


def _api_lead(request: Request) -> dict[str, Any]:
    w = _world(request)
    lead = w.kommo.store.lead(w.demo.account_id, request.path_params["id"])
    return render.lead_json(w.kommo.store, lead, "contacts" in request.query_params.get("with", ""))


def _api_contact(request: Request) -> dict[str, Any]:
    w = _world(request)
    contact = w.kommo.store.contact(w.demo.account_id, request.path_params["id"])
    return render.contact_json(w.kommo.store, contact, "leads" in request.query_params.get("with", ""))


def _api_pipelines(request: Request) -> dict[str, Any]:
    return render.pipelines_json(request, _account(request))


def _api_account(request: Request) -> dict[str, Any]:
    return render.account_json(request, _account(request))


routes = [
    Route("/sandbox/api/board", board, methods=["GET"]),
    Route("/sandbox/api/leads/{id:int}", lead_card, methods=["GET"]),
    Route("/sandbox/api/leads/{id:int}/stage", move_lead, methods=["POST"]),
    Route("/sandbox/api/esp", esp, methods=["GET"]),
    Route("/sandbox/api/esp/unsubscribe", unsubscribe, methods=["POST"]),
    Route("/api/v4/leads/pipelines", _kommo(_api_pipelines), methods=["GET"]),
    Route("/api/v4/leads/{id:int}", _kommo(_api_lead), methods=["GET"]),
    Route("/api/v4/contacts/{id:int}", _kommo(_api_contact), methods=["GET"]),
    Route("/api/v4/account", _kommo(_api_account), methods=["GET"]),
]

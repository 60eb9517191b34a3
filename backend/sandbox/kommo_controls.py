"""The simulated Kommo's test-only controls (`/_sandbox/*`: accounts, codes, contacts, leads, stage
moves, dropped and retried webhooks, notes, the request log) for a sandbox served over HTTP, and
the small answer helpers the API routes share. None of this is part of Kommo's API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend.sandbox import kommo_render as render
from backend.sandbox.kommo_store import KommoProblem

Endpoint = Callable[[Request], Awaitable[Response]]


def control_routes() -> Iterable[Route]:
    """Test-only controls for a sandbox served over HTTP; not part of Kommo's API."""
    return [Route(path, _controlled(handler), methods=[method]) for method, path, handler in (
        ("POST", "/_sandbox/accounts", _add_account),
        ("POST", "/_sandbox/accounts/{id:int}/authorize", _authorize),
        ("POST", "/_sandbox/accounts/{id:int}/contacts", _add_contact),
        ("POST", "/_sandbox/accounts/{id:int}/leads", _add_lead),
        ("POST", "/_sandbox/accounts/{id:int}/leads/{lead_id:int}/stage", _change_stage),
        ("POST", "/_sandbox/webhooks/drop", _drop_webhooks),
        ("POST", "/_sandbox/webhooks/redeliver", _redeliver),
        ("GET", "/_sandbox/accounts/{id:int}/notes", _notes),
        ("GET", "/_sandbox/requests", _request_log))]


async def _add_account(request: Request) -> Response:
    spec = await read_body(request) or {}
    account = request.app.state.sandbox.store.add_account(
        int(spec.get("id", 29085424)), spec.get("subdomain", "acme"), spec.get("name", ""))
    return answer(render.account_json(request, account) | {"host": account.host})


async def _authorize(request: Request) -> Response:
    store = request.app.state.sandbox.store
    account = store.account(request.path_params["id"])
    return answer({"code": store.authorize(account.id), "referer": account.host})


async def _add_contact(request: Request) -> Response:
    spec, store = await read_body(request) or {}, request.app.state.sandbox.store
    contact = store.add_contact(request.path_params["id"], str(spec.get("name", "")),
                                emails=spec.get("emails", []), phones=spec.get("phones", []))
    return answer(render.contact_json(store, contact, with_leads=False))


async def _add_lead(request: Request) -> Response:
    spec, store = await read_body(request) or {}, request.app.state.sandbox.store
    lead = store.add_lead(request.path_params["id"], str(spec.get("name", "")),
                          status_id=spec.get("status_id"), contacts=spec.get("contacts", []),
                          **({"pipeline_id": spec["pipeline_id"]} if "pipeline_id" in spec else {}))
    return answer(render.lead_json(store, lead, with_contacts=True))


async def _change_stage(request: Request) -> Response:
    spec = await read_body(request) or {}
    sent = await request.app.state.sandbox.change_stage(
        request.path_params["id"], request.path_params["lead_id"], int(spec["status_id"]),
        spec.get("pipeline_id"))
    return answer({"deliveries": [{"url": d.url, "status": d.status} for d in sent]})


async def _drop_webhooks(request: Request) -> Response:
    """`{"next": n}` loses the next n deliveries; `{"all": true|false}` loses every one or none."""
    spec, policy = await read_body(request) or {}, request.app.state.sandbox.delivery
    if "all" in spec:
        policy.drop_all = bool(spec["all"])
    if "next" in spec:
        policy.drop_next(int(spec["next"]))
    return answer({"drop_all": policy.drop_all, "drops_left": policy.drops_left,
                  "dropped": policy.dropped})


async def _redeliver(request: Request) -> Response:
    """Kommo retries the deliveries the receiver did not acknowledge (`KommoSandbox.redeliver`)."""
    sent = await request.app.state.sandbox.redeliver()
    return answer({"deliveries": [{"url": d.url, "status": d.status} for d in sent]})


async def _notes(request: Request) -> Response:
    """Every note of the account, as stored (what mailsync wrote to leads and contacts)."""
    return answer(request.app.state.sandbox.store.account(request.path_params["id"]).notes)


async def _request_log(request: Request) -> Response:
    return answer([r.__dict__ for r in request.app.state.sandbox.requests])


def _controlled(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except KommoProblem as problem:
            return problem_answer(problem)

    return endpoint


async def read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise KommoProblem(400, "the request body is not JSON") from None


def answer(body: Any, status: int = 200) -> Response:
    if body is None:
        return Response(status_code=204)
    return JSONResponse(body, status_code=status, media_type="application/hal+json")


def problem_answer(problem: KommoProblem) -> Response:
    return JSONResponse(problem.body(), status_code=problem.status, media_type="application/problem+json")

"""A simulated Kommo (Starlette, state in memory) faithful to Kommo's API documentation: the OAuth token
endpoint, API v4 for the calls mailsync makes, the 7 requests/s limit, 204 for empty lists,
problem+json errors, and form-encoded webhooks like the real ones (tests/fixtures/kommo).

One instance hosts any number of accounts; API calls pick theirs from the bearer token. Tests drive
it from Python (`KommoSandbox.store`, `change_stage`, `fire`); `/_sandbox/*` does the same over HTTP
for a sandbox served with uvicorn. `requests` logs every token and API call, for tests to count.
"""

from __future__ import annotations

import collections
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend.sandbox import kommo_render as render
from backend.sandbox.kommo_store import Account, KommoProblem, KommoStore

RATE_LIMIT = 7  # requests per second per account


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    account_id: int | None
    status: int
    grant_type: str | None = None
    at: float = 0.0  # time.monotonic() on arrival


@dataclass(frozen=True)
class Delivery:
    url: str
    body: str
    status: int | None  # None: the receiver could not be reached


Handler = Callable[[Request, Account], Any]
Endpoint = Callable[[Request], Awaitable[Response]]


class KommoSandbox:
    def __init__(self, store: KommoStore | None = None, *, webhook_client: httpx2.AsyncClient | None = None,
                 rate_limit: int = RATE_LIMIT) -> None:
        self.store = store or KommoStore()
        self.webhook_client = webhook_client
        self.rate_limit = rate_limit
        self.requests: list[LoggedRequest] = []
        self.deliveries: list[Delivery] = []
        self._recent: dict[int, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.app = Starlette(routes=self._routes(), exception_handlers={HTTPException: _http_problem})
        self.app.state.sandbox = self

    def calls(self, path: str | None = None, *, method: str | None = None,
              grant_type: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.requests if (path is None or r.path == path)
                and (method is None or r.method == method)
                and (grant_type is None or r.grant_type == grant_type)]

    # --- webhooks out ---------------------------------------------------------------------------

    async def change_stage(self, account_id: int, lead_id: int, status_id: int,
                           pipeline_id: int | None = None, *, url: str | None = None) -> list[Delivery]:
        """Move the lead and send `leads[status]` to the subscribed webhooks (or to `url`)."""
        lead = self.store.move_lead(account_id, lead_id, status_id, pipeline_id)
        return await self.fire(account_id, "leads", "status", [render.lead_hook(self.store, lead)], url=url)

    async def fire_lead(self, account_id: int, lead_id: int, action: str, *,
                        url: str | None = None) -> list[Delivery]:
        lead = self.store.lead(account_id, lead_id)
        item = render.lead_deleted_hook(lead) if action == "delete" else render.lead_hook(self.store, lead)
        return await self.fire(account_id, "leads", action, [item], url=url)

    async def fire_contact(self, account_id: int, contact_id: int, action: str, *,
                           url: str | None = None) -> list[Delivery]:
        contact = self.store.contact(account_id, contact_id)
        item = (render.contact_deleted_hook(contact) if action == "delete"
                else render.contact_hook(self.store, contact))
        return await self.fire(account_id, "contacts", action, [item], url=url)

    async def fire(self, account_id: int, entity: str, action: str, items: list[dict[str, Any]], *,
                   url: str | None = None) -> list[Delivery]:
        """POST one form-encoded body to `url`, or to every enabled webhook subscribed to it."""
        account = self.store.account(account_id)
        body = render.webhook_body(account, entity, action, items)
        setting = render.setting_name(entity, action, items)
        urls = [url] if url else [hook["destination"] for hook in account.webhooks.values()
                                  if setting in hook["settings"] and not hook["disabled"]]
        sent = [await self._deliver(target, body) for target in urls]
        self.deliveries += sent
        return sent

    async def _deliver(self, url: str, body: str) -> Delivery:
        client = self.webhook_client or httpx2.AsyncClient(timeout=2.0)  # Kommo waits 2 s
        try:
            response = await client.post(url, content=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "amoCRM-Webhooks/3.0"})
            return Delivery(url, body, response.status_code)
        except httpx2.TransportError:
            return Delivery(url, body, None)
        finally:
            if self.webhook_client is None:
                await client.aclose()

    # --- HTTP -----------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        api = self._api
        return [
            Route("/oauth2/access_token", self._token, methods=["POST"]),
            Route("/api/v4/account", api(render.account_json), methods=["GET"]),
            Route("/api/v4/leads/pipelines", api(render.pipelines_json), methods=["GET"]),
            Route("/api/v4/leads", api(self._leads), methods=["GET"]),
            Route("/api/v4/leads/{id:int}", api(self._lead), methods=["GET"]),
            Route("/api/v4/contacts", api(self._contacts), methods=["GET"]),
            Route("/api/v4/contacts/{id:int}", api(self._contact), methods=["GET", "PATCH"]),
            Route("/api/v4/companies", api(self._companies), methods=["GET"]),
            Route("/api/v4/{entity}/notes", api(self._add_notes), methods=["POST"]),
            Route("/api/v4/{entity}/custom_fields", api(self._custom_fields), methods=["GET", "POST"]),
            Route("/api/v4/webhooks", api(self._webhooks), methods=["GET", "POST", "DELETE"]),
            *control_routes(),
        ]

    async def _token(self, request: Request) -> Response:
        form = await _form_or_json(request)
        try:
            answer = _json(self.store.token(form))
        except KommoProblem as problem:
            answer = _problem(problem)
        self._log(request, None, answer.status_code, grant_type=form.get("grant_type"),
                  at=time.monotonic())
        return answer

    def _api(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            account, arrived = None, time.monotonic()
            try:
                account = self.store.account_for_token(_bearer(request))
                self._take_budget(account.id, arrived)
                result = handler(request, account)
                result = await result if inspect.isawaitable(result) else result
                answer = result if isinstance(result, Response) else _json(result)
            except KommoProblem as problem:
                answer = _problem(problem)
            self._log(request, account.id if account else None, answer.status_code, at=arrived)
            return answer

        return endpoint

    def _take_budget(self, account_id: int, now: float) -> None:
        # A sliding one-second window: never more than `rate_limit` requests in any second.
        recent = self._recent[account_id]
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.rate_limit:
            raise KommoProblem(429, "You have sent too many requests in a given amount of time. "
                                    "Please try again later.", retry_after=1)
        recent.append(now)

    def _log(self, request: Request, account_id: int | None, status: int, **extra: Any) -> None:
        self.requests.append(LoggedRequest(request.method, request.url.path, request.url.query,
                                           account_id, status, **extra))

    async def _leads(self, request: Request, account: Account) -> Any:
        return render.leads_list(self.store, account, request.query_params.multi_items())

    async def _lead(self, request: Request, account: Account) -> Any:
        lead = self.store.lead(account.id, request.path_params["id"])
        return render.lead_json(self.store, lead, "contacts" in request.query_params.get("with", ""))

    async def _contacts(self, request: Request, account: Account) -> Any:
        return render.contacts_list(self.store, account, request.query_params.multi_items())

    async def _contact(self, request: Request, account: Account) -> Any:
        contact = self.store.contact(account.id, request.path_params["id"])
        if request.method == "PATCH":
            return render.patch_contact(self.store, account, contact, await _body(request))
        return render.contact_json(self.store, contact, "leads" in request.query_params.get("with", ""))

    async def _companies(self, request: Request, account: Account) -> Any:
        return render.companies_list(self.store, account, request.query_params.multi_items())

    async def _add_notes(self, request: Request, account: Account) -> Any:
        return render.add_notes(self.store, account, request.path_params["entity"], await _body(request))

    async def _custom_fields(self, request: Request, account: Account) -> Any:
        entity = request.path_params["entity"]
        if request.method == "POST":
            return render.add_custom_fields(self.store, account, entity, await _body(request))
        return render.custom_fields_list(account, entity, request.query_params)

    async def _webhooks(self, request: Request, account: Account) -> Any:
        if request.method == "GET":
            return render.webhooks_list(account, request.query_params.get("filter[destination]"))
        body = await _body(request)
        if request.method == "DELETE":
            account.webhooks.pop(str((body or {}).get("destination", "")), None)
            return Response(status_code=204)
        return render.add_webhook(self.store, account, body)


def create_kommo_sandbox(store: KommoStore | None = None, *,
                         webhook_client: httpx2.AsyncClient | None = None,
                         rate_limit: int = RATE_LIMIT) -> Starlette:
    """The Starlette app (its `KommoSandbox` is `app.state.sandbox`)."""
    return KommoSandbox(store, webhook_client=webhook_client, rate_limit=rate_limit).app


def control_routes() -> Iterable[Route]:
    """Test-only controls for a sandbox served over HTTP; not part of Kommo's API."""
    return [Route(path, _controlled(handler), methods=[method]) for method, path, handler in (
        ("POST", "/_sandbox/accounts", _add_account),
        ("POST", "/_sandbox/accounts/{id:int}/authorize", _authorize),
        ("POST", "/_sandbox/accounts/{id:int}/contacts", _add_contact),
        ("POST", "/_sandbox/accounts/{id:int}/leads", _add_lead),
        ("POST", "/_sandbox/accounts/{id:int}/leads/{lead_id:int}/stage", _change_stage),
        ("GET", "/_sandbox/requests", _request_log))]


async def _add_account(request: Request) -> Response:
    spec = await _body(request) or {}
    account = request.app.state.sandbox.store.add_account(
        int(spec.get("id", 29085424)), spec.get("subdomain", "acme"), spec.get("name", ""))
    return _json(render.account_json(request, account) | {"host": account.host})


async def _authorize(request: Request) -> Response:
    store = request.app.state.sandbox.store
    account = store.account(request.path_params["id"])
    return _json({"code": store.authorize(account.id), "referer": account.host})


async def _add_contact(request: Request) -> Response:
    spec, store = await _body(request) or {}, request.app.state.sandbox.store
    contact = store.add_contact(request.path_params["id"], str(spec.get("name", "")),
                                emails=spec.get("emails", []), phones=spec.get("phones", []))
    return _json(render.contact_json(store, contact, with_leads=False))


async def _add_lead(request: Request) -> Response:
    spec, store = await _body(request) or {}, request.app.state.sandbox.store
    lead = store.add_lead(request.path_params["id"], str(spec.get("name", "")),
                          status_id=spec.get("status_id"), contacts=spec.get("contacts", []),
                          **({"pipeline_id": spec["pipeline_id"]} if "pipeline_id" in spec else {}))
    return _json(render.lead_json(store, lead, with_contacts=True))


async def _change_stage(request: Request) -> Response:
    spec = await _body(request) or {}
    sent = await request.app.state.sandbox.change_stage(
        request.path_params["id"], request.path_params["lead_id"], int(spec["status_id"]),
        spec.get("pipeline_id"))
    return _json({"deliveries": [{"url": d.url, "status": d.status} for d in sent]})


async def _request_log(request: Request) -> Response:
    return _json([r.__dict__ for r in request.app.state.sandbox.requests])


def _controlled(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except KommoProblem as problem:
            return _problem(problem)

    return endpoint


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise KommoProblem(401, "Invalid user name or password")
    return token.strip()


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise KommoProblem(400, "the request body is not JSON") from None


async def _form_or_json(request: Request) -> dict[str, str]:
    # Kommo's docs show JSON; the official library and Authlib post a form. Both work there.
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await _body(request)
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _json(body: Any, status: int = 200) -> Response:
    if body is None:
        return Response(status_code=204)
    return JSONResponse(body, status_code=status, media_type="application/hal+json")


def _problem(problem: KommoProblem) -> Response:
    return JSONResponse(problem.body(), status_code=problem.status, media_type="application/problem+json")


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _problem(KommoProblem(exc.status_code, str(exc.detail)))

"""A simulated Kommo (Starlette, state in memory) faithful to Kommo's API documentation: the OAuth token
endpoint, API v4 for the calls mailsync makes, the 7 requests/s limit, 204 for empty lists,
problem+json errors, and form-encoded webhooks like the real ones (tests/fixtures/kommo).

One instance hosts any number of accounts; API calls pick theirs from the bearer token. Tests drive
it from Python (`KommoSandbox.store`, `change_stage`, `fire`); `/_sandbox/*` does the same over HTTP
for a sandbox served with uvicorn. `requests` logs every token and API call, for tests to count.
Every change is also written to the event log (`GET /api/v4/events`), and `delivery` can drop
webhook deliveries the way Kommo sometimes does, so the catch-up from that log can be tested.
"""

from __future__ import annotations

import collections
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backend.sandbox import kommo_events
from backend.sandbox import kommo_render as render
from backend.sandbox.kommo_controls import answer as _json
from backend.sandbox.kommo_controls import control_routes
from backend.sandbox.kommo_controls import problem_answer as _problem
from backend.sandbox.kommo_controls import read_body as _body
from backend.sandbox.kommo_delivery import DeliveryPolicy
from backend.sandbox.kommo_store import EMAIL_FIELD, USER_ID, Account, KommoProblem, KommoStore

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
    status: int | None  # None: the receiver could not be reached, or the delivery was dropped
    dropped: bool = False  # lost on Kommo's side: never sent, never resent


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
        self._resent: set[int] = set()  # indexes into `deliveries` already sent again
        self.delivery = DeliveryPolicy(self.store.clock)
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

    async def delete_lead(self, account_id: int, lead_id: int, *, url: str | None = None) -> list[Delivery]:
        lead = kommo_events.delete_lead(self.store, account_id, lead_id)
        return await self.fire(account_id, "leads", "delete", [render.lead_deleted_hook(lead)], url=url)

    async def change_emails(self, account_id: int, contact_id: int, emails: list[str | tuple[str, str]],
                            *, url: str | None = None) -> list[Delivery]:
        typed = [(e, "WORK") if isinstance(e, str) else (e[0], e[1]) for e in emails]
        kommo_events.set_emails(self.store, account_id, contact_id, typed, EMAIL_FIELD)
        return await self.fire_contact(account_id, contact_id, "update", url=url)

    async def link_contact(self, account_id: int, lead_id: int, contact_id: int, *, linked: bool = True,
                           url: str | None = None) -> list[Delivery]:
        """Link (or unlink) a contact and a lead; Kommo reports it as an edit of the lead."""
        kommo_events.link(self.store, account_id, lead_id, contact_id, linked=linked)
        return await self.fire_lead(account_id, lead_id, "update", url=url)

    async def fire(self, account_id: int, entity: str, action: str, items: list[dict[str, Any]], *,
                   url: str | None = None) -> list[Delivery]:
        """POST one form-encoded body to `url`, or to every enabled webhook subscribed to it.
        A delivery `delivery` drops is never sent (nor resent)."""
        account = self.store.account(account_id)
        body = render.webhook_body(account, entity, action, items)
        setting = render.setting_name(entity, action, items)
        targets = [(url, None)] if url else [(hook["destination"], hook) for hook in account.webhooks.values()
                                             if setting in hook["settings"] and not hook["disabled"]]
        sent: list[Delivery] = []
        for target, hook in targets:
            if self.delivery.should_drop():
                sent.append(Delivery(target, body, None, dropped=True))
                continue
            sent.append(await self._deliver(target, body))
            if hook is not None:
                self.delivery.answered(hook, sent[-1].status)
        self.deliveries += sent
        return sent

    async def redeliver(self) -> list[Delivery]:
        """Kommo's retry: every delivery the receiver did not acknowledge (no answer, or not 2xx)
        is sent once more with the same body; a retry that fails is retried by the next call.
        Dropped deliveries stay lost: Kommo never sent them."""
        due = [n for n, d in enumerate(self.deliveries) if n not in self._resent and not d.dropped
               and not (d.status is not None and 200 <= d.status < 300)]
        self._resent.update(due)
        sent = [await self._deliver(self.deliveries[n].url, self.deliveries[n].body) for n in due]
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
            Route("/api/v4/{entity}/notes", api(self._notes), methods=["GET", "POST"]),
            Route("/api/v4/{entity}/custom_fields", api(self._custom_fields), methods=["GET", "POST"]),
            Route("/api/v4/webhooks", api(self._webhooks), methods=["GET", "POST", "DELETE"]),
            Route("/api/v4/events", api(self._events), methods=["GET"]),
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

    async def _notes(self, request: Request, account: Account) -> Any:
        entity = request.path_params["entity"]
        if request.method == "GET":
            return render.notes_list(account, entity, request.query_params.multi_items())
        return render.add_notes(self.store, account, entity, await _body(request))

    async def _custom_fields(self, request: Request, account: Account) -> Any:
        entity = request.path_params["entity"]
        if request.method == "POST":
            return render.add_custom_fields(self.store, account, entity, await _body(request))
        return render.custom_fields_list(account, entity, request.query_params)

    async def _events(self, request: Request, account: Account) -> Any:
        try:
            return kommo_events.events_list(self.store.events, account.id, account.host,
                                            request.query_params.multi_items(), created_by=USER_ID)
        except kommo_events.BadFilter as exc:
            raise KommoProblem(400, str(exc)) from None

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


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise KommoProblem(401, "Invalid user name or password")
    return token.strip()


async def _form_or_json(request: Request) -> dict[str, str]:
    # Kommo's docs show JSON; the official library and Authlib post a form. Both work there.
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await _body(request)
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _problem(KommoProblem(exc.status_code, str(exc.detail)))

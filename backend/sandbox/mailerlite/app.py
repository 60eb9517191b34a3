"""The HTTP front: key check, the per-key request budget, the request log, and test seeding."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend.sandbox.mailerlite import webhooks
from backend.sandbox.mailerlite.api import Api, dispatch
from backend.sandbox.mailerlite.batch import run_batch
from backend.sandbox.mailerlite.classic import classic_dispatch
from backend.sandbox.mailerlite.shapes import subscriber_body
from backend.sandbox.mailerlite.store import DEFAULT_FIELDS, State, now_text
from backend.sandbox.simulator import Answer, LoggedRequest, select_calls

SANDBOX_API_KEY = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzYW5kYm94In0."
                   "c2FuZGJveC1zaWduYXR1cmUtbm90LXJlYWw")
SANDBOX_CLASSIC_KEY = "0123456789abcdef0123456789abcdef"


class MailerLiteSandbox:
    def __init__(self, state: State) -> None:
        self.state = state
        self.api = Api(state)
        for ident, name, key in DEFAULT_FIELDS:
            state.fields[ident] = {"id": ident, "name": name, "key": key, "type": "text",
                                   "is_default": True}

    @property
    def requests(self) -> list[LoggedRequest]:
        return self.state.requests

    def calls(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        return select_calls(self.state.requests, method, path)

    # Seeding and inspection for tests and the demo.

    def add_group(self, name: str, *, ident: str | None = None) -> str:
        group = {"id": ident or self.state.new_id(), "name": name, "created_at": now_text()}
        self.state.groups[group["id"]] = group
        return group["id"]

    def add_subscriber(self, email: str, *, status: str = "active", ident: str | None = None,
                       groups: Iterable[str] = ()) -> dict[str, Any]:
        sub = self.api._create(email, status, None)
        if ident is not None:
            self.state.subscribers[ident] = self.state.subscribers.pop(sub["id"])
            self.state.memberships[ident] = self.state.memberships.pop(sub["id"])
            sub["id"] = ident
        self.state.memberships[sub["id"]].extend(groups)
        return sub

    def add_field(self, name: str, *, ident: str | None = None) -> dict[str, Any]:
        item = self.api.create_field({}, {"name": name, "type": "text"})[1]["data"]
        if ident is not None:
            self.state.fields[ident] = {**self.state.fields.pop(item["id"]), "id": ident}
        return self.state.fields[ident or item["id"]]

    def add_webhook(self, url: str, events: list[str], *, ident: str | None = None,
                    batchable: bool = False) -> dict[str, Any]:
        hook = self.api.create_webhook({}, {"url": url, "events": events, "batchable": batchable})
        hook_id = hook[1]["data"]["id"]
        if ident is not None:
            self.state.webhooks[ident] = {**self.state.webhooks.pop(hook_id), "id": ident}
        return self.state.webhooks[ident or hook_id]

    def add_import(self, group_id: str, emails: list[str], *, ident: str) -> dict[str, Any]:
        url = self.api.import_to_group(group_id, {}, {"subscribers": [{"email": e} for e in emails]})
        report = self.state.imports.pop(url[1]["import_progress_url"].rsplit("/", 1)[1])
        self.state.imports[ident] = {**report, "id": ident}
        return self.state.imports[ident]

    def subscriber(self, email: str) -> dict[str, Any] | None:
        sub = self.state.by_email(email)
        return None if sub is None else subscriber_body(self.state, sub)

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        classic = path.startswith("/api/v2/")
        rel = path.removeprefix("/api/v2/" if classic else "/api/")
        key = (request.headers.get("x-mailerlite-apikey") if classic
               else request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return JSONResponse({"message": "Malformed JSON."}, status_code=400)
        query = dict(request.query_params)
        self.state.requests.append(LoggedRequest(request.method, path, query, body, key))
        if key not in (self.state.classic_keys if classic else self.state.api_keys):
            return JSONResponse({"message": "Unauthenticated."} if not classic else
                                {"error": {"code": 1, "message": "Unauthorized"}}, status_code=401)
        remaining, reset = self.state.take("api", key or "", self.state.rate_limit)
        limit_headers = {"x-ratelimit-limit": str(self.state.rate_limit),
                         "x-ratelimit-remaining": str(max(0, remaining))}
        if remaining < 0:
            return JSONResponse({"message": "Too Many Attempts."}, status_code=429, headers={
                **limit_headers, "Retry-After": str(max(1, math.ceil(reset)))})
        status, answer = self._route(classic, request.method, rel, key or "", query, body)
        if status == 429:  # the import limit: say when its window turns, as for the request limit
            start, _count = self.state.windows.get(("import", key or ""), (self.state.clock(), 0))
            reset = start + self.state.window - self.state.clock()
            limit_headers["Retry-After"] = str(max(1, math.ceil(reset)))
        if status == 204:
            return Response(status_code=204, headers=limit_headers)
        return JSONResponse(answer, status_code=status, headers=limit_headers)

    def _route(self, classic: bool, method: str, rel: str, key: str, query: dict[str, str],
               body: Any) -> Answer:
        if classic:
            return classic_dispatch(self.state, method, rel, body)
        if method == "POST" and rel == "batch":
            return self.batch(key, body)
        return dispatch(self.api, method, rel, query, body)

    def batch(self, key: str, body: Any) -> Answer:
        return run_batch(self.state, self.api, key, body)

    async def deliver(self, event: str, email: str, *, client: httpx2.AsyncClient,
                      signature: str | None = None) -> list[httpx2.Response]:
        """POST `event` about `email` to every enabled webhook that asked for it, signed with
        its secret (or with `signature`, to forge one)."""
        return await webhooks.deliver(self.state, event, email, client=client, signature=signature)


def create_mailerlite_sandbox(
    *,
    api_keys: Iterable[str] = (SANDBOX_API_KEY,),
    classic_keys: Iterable[str] = (SANDBOX_CLASSIC_KEY,),
    rate_limit: int = 120,
    window: float = 60.0,
    import_limit: int = 5,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The app; its `state.sandbox` is the `MailerLiteSandbox` (seeding, log, deliveries)."""
    sandbox = MailerLiteSandbox(State(api_keys=set(api_keys), classic_keys=set(classic_keys),
                                      rate_limit=rate_limit, window=window,
                                      import_limit=import_limit, clock=clock))
    app = Starlette(routes=[Route("/api/{path:path}", sandbox.handle,
                                  methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])
    app.state.sandbox = sandbox
    return app

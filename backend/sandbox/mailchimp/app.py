"""The HTTP front: key and datacenter check, the request budget, the simultaneous-connection cap,
the request log, and test seeding."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend.sandbox.mailchimp import webhooks
from backend.sandbox.mailchimp.api import Api, dispatch
from backend.sandbox.mailchimp.store import FAKE_DOMAINS, Audience, Problem, md5
from backend.sandbox.simulator import LoggedRequest, select_calls, take_window

_DC = re.compile(r"-([a-z]{2,4}\d{1,3})$")
SANDBOX_API_KEY = "0123456789abcdef0123456789abcdef-us21"


class MailchimpSandbox:
    def __init__(self, *, api_keys: Iterable[str], rate_limit: int | None, window: float,
                 max_connections: int, merge_field_limit: int, fake_domains: Iterable[str],
                 validator: httpx2.AsyncClient | None, clock: Callable[[], float]) -> None:
        self.api_keys = set(api_keys)
        self.rate_limit, self.window, self.clock = rate_limit, window, clock
        self.max_connections = max_connections
        self.merge_field_limit = merge_field_limit
        self.fake_domains = frozenset(fake_domains)
        self.validator = validator
        self.audiences: dict[str, Audience] = {}
        self.requests: list[LoggedRequest] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight = 0
        self.gate: asyncio.Event | None = None  # tests: hold requests inside the sandbox
        self.changed = asyncio.Condition()
        self._windows: dict[str, tuple[float, int]] = {}
        self._ids = 10_000
        self.api = Api(self)

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_audience(self, name: str, *, list_id: str | None = None) -> Audience:
        audience = Audience(id=list_id or uuid.uuid4().hex[:10], name=name)
        audience.merge_fields = [
            {"merge_id": n, "tag": tag, "name": label, "type": kind, "required": False,
             "default_value": "", "public": True, "display_order": n + 1, "list_id": audience.id}
            for n, (tag, label, kind) in enumerate(
                [("FNAME", "First Name", "text"), ("LNAME", "Last Name", "text"),
                 ("ADDRESS", "Address", "address"), ("PHONE", "Phone Number", "phone")], 1)]
        self.audiences[audience.id] = audience
        return audience

    def add_member(self, list_id: str, email: str, status: str = "subscribed",
                   tags: Iterable[str] = ()) -> dict[str, Any]:
        audience = self.audiences[list_id]
        member = self.api._new_member(audience, email.lower(), status)
        for tag in tags:
            self.api._tag(audience, member, tag, True)
        return member

    def member(self, list_id: str, email: str) -> dict[str, Any] | None:
        return self.audiences[list_id].members.get(md5(email))

    def calls(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        return select_calls(self.requests, method, path)

    async def validate_url(self, url: str) -> bool:
        if self.validator is None:
            return True
        answer = await self.validator.get(url, headers={
            "User-Agent": "MailChimp.com WebHook Validator"})
        return answer.status_code == 200

    def _key(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            try:
                return base64.b64decode(auth[6:]).decode().partition(":")[2]
            except ValueError:
                return None
        return auth.removeprefix("Bearer ").strip() or None

    def _over_budget(self, key: str) -> float | None:
        if self.rate_limit is None:
            return None
        remaining, reset = take_window(self._windows, key, self.rate_limit, self.window, self.clock)
        return max(1.0, reset) if remaining < 0 else None

    async def handle(self, request: Request) -> Response:
        dc = request.path_params.get("dc")
        key = self._key(request)
        raw = await request.body()
        body = json.loads(raw) if raw else None
        path = request.path_params["path"]
        self.requests.append(LoggedRequest(request.method, f"/{path}", dict(request.query_params),
                                           body, key))
        match = _DC.search(key or "")
        if key not in self.api_keys or (dc and (match is None or match.group(1) != dc)):
            return problem_response(Problem(401, "API Key Invalid", "Your API key may be invalid, "
                                            "or you've attempted to access the wrong datacenter."))
        retry = self._over_budget(key)
        if retry is not None:
            return problem_response(Problem(429, "Too Many Requests", "You have exceeded the "
                                            "request budget of this sandbox window."),
                                    {"Retry-After": str(math.ceil(retry))})
        if self.in_flight.get(key, 0) >= self.max_connections:
            return problem_response(Problem(429, "TooManyRequests", "You have exceeded the limit "
                                            "of 10 simultaneous connections."))
        return await self._run(key, request.method, path, dict(request.query_params), body)

    async def _run(self, key: str, method: str, path: str, query: dict, body: Any) -> Response:
        await self._count(key, +1)
        try:
            if self.gate is not None:
                await self.gate.wait()
            status, answer = await dispatch(self.api, method, path, query, body)
        finally:
            await self._count(key, -1)
        if status == 204:
            return Response(status_code=204)
        media = "application/problem+json" if status >= 400 else "application/json"
        return JSONResponse(answer, status_code=status, media_type=media)

    async def _count(self, key: str, delta: int) -> None:
        async with self.changed:
            self.in_flight[key] = self.in_flight.get(key, 0) + delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight[key])
            self.changed.notify_all()

    async def request_log(self, request: Request) -> Response:
        return JSONResponse([{"method": r.method, "path": r.path, "query": r.query, "json": r.json}
                             for r in self.requests])

    async def deliver(self, list_id: str, kind: str, data: dict[str, str], *,
                      client: httpx2.AsyncClient, source: str = "user") -> list[httpx2.Response]:
        """POST a form-encoded `kind` event (`data` is the `data[...]` map) to every webhook of the
        audience that wants it from `source`."""
        return await webhooks.deliver(self.audiences[list_id], list_id, kind, data, client=client,
                                      source=source)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(problem.body, status_code=problem.status, headers=headers,
                        media_type="application/problem+json")


def create_mailchimp_sandbox(
    *,
    api_keys: Iterable[str] = (SANDBOX_API_KEY,),
    rate_limit: int | None = None,
    window: float = 60.0,
    max_connections: int = 10,
    merge_field_limit: int = 30,
    fake_domains: Iterable[str] = FAKE_DOMAINS,
    validator: httpx2.AsyncClient | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The app; `app.state.sandbox` is the `MailchimpSandbox`. `validator` is the client used for
    the GET that validates a webhook URL (None: every URL validates). `GET /_sandbox/requests`
    (not Mailchimp's API, not counted against any key) reads the request log, keys left out, for
    tests that drive the sandbox over HTTP."""
    sandbox = MailchimpSandbox(api_keys=api_keys, rate_limit=rate_limit, window=window,
                               max_connections=max_connections, merge_field_limit=merge_field_limit,
                               fake_domains=fake_domains, validator=validator, clock=clock)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/_sandbox/requests", sandbox.request_log, methods=["GET"]),
                            Route("/{dc}/3.0/{path:path}", sandbox.handle, methods=methods),
                            Route("/3.0/{path:path}", sandbox.handle, methods=methods)])
    app.state.sandbox = sandbox
    return app

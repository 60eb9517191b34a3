"""Webhooks in: verify → store → acknowledge. No handler here calls Kommo or an ESP.

Each delivery becomes one inbox row (deduplicated) plus the jobs it implies, committed before
the 200 goes out; the worker does the rest. Hook keys are looked up through a short-lived cache
so a burst of deliveries does not queue reads behind the SQLite writer. Bodies are read capped,
large ones parsed off the event loop, and failed authentications counted per caller
(`webhook_guard.py`).

A platform's batch of more than `INLINE_EVENTS` opt-outs is stored as one delivery whose
`esp_batch` job the worker splits into the per-event deliveries (`sync/work.py`): storing 8,000
events one inbox row at a time would take longer than the platform waits for an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend import hook_answers, logs, metrics, repository
from backend.errors import BadRequest, Gone, MailsyncError, NotFound
from backend.inbox import Delivery, compact_body
from backend.jobs import JobSpec
from backend.kommo.webhooks import KommoEvent, parse_webhook
from backend.models import AccountStatus, EspConnection
from backend.providers import registry
from backend.resources import Resources
from backend.routes.webhook_guard import guarded, off_loop, plausible_key, read_body
from backend.sync.work import ApplyEspEvent, ReconcileContact, ReconcileLead, SplitEspBatch

HOOK_CACHE_SECONDS = 5.0
INLINE_EVENTS = 100  # opt-outs per platform delivery stored one row each; more go as a batch


@dataclass(frozen=True)
class HookTarget:
    account_id: int
    status: str
    connection: EspConnection | None = None  # ESP hooks: the connection the key belongs to


class HookKeyCache:
    """hook key → (account id, status), remembered for a few seconds (misses too, so a flood of
    unknown keys costs one read per key, not one per request)."""

    def __init__(self, ttl: float = HOOK_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, HookTarget | None]] = {}

    async def kommo(self, request: Request, hook_key: str) -> HookTarget | None:
        return await self._lookup(request, f"kommo:{hook_key}", _find_kommo, hook_key)

    async def esp(self, request: Request, hook_key: str) -> HookTarget | None:
        return await self._lookup(request, f"esp:{hook_key}", _find_esp, hook_key)

    async def _lookup(self, request: Request, cache_key: str, find, hook_key: str) -> HookTarget | None:
        cached = self._entries.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with request.app.state.resources.reads() as session:
            target = await find(session, hook_key)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[cache_key] = (now + self.ttl, target)
        return target


async def _find_kommo(session, hook_key: str) -> HookTarget | None:
    account = await repository.find_account_by_hook_key(session, hook_key)
    return HookTarget(account.id, account.status) if account else None


async def _find_esp(session, hook_key: str) -> HookTarget | None:
    connection = await repository.find_esp_connection_by_hook_key(session, hook_key)
    if connection is None:
        return None
    account = await repository.get_account(session, connection.account_id)
    status = account.status if account else AccountStatus.DISCONNECTED
    if not connection.api_key_enc:
        status = AccountStatus.DISCONNECTED
    return HookTarget(connection.account_id, status, connection)


def _cache(request: Request) -> HookKeyCache:
    state = request.app.state
    if not hasattr(state, "hook_cache"):
        state.hook_cache = HookKeyCache()
    return state.hook_cache


def reject(source: str, exc: MailsyncError) -> MailsyncError:
    metrics.WEBHOOKS_REJECTED.labels(source, exc.code).inc()
    return exc


@guarded
async def kommo_webhook(request: Request) -> JSONResponse:
    hook_key = request.path_params["hook_key"]
    target = await _cache(request).kommo(request, hook_key) if plausible_key(hook_key) else None
    if target is None:
        raise reject("kommo", NotFound("no account has this webhook address", code="unknown_hook"))
    logs.bind_account(target.account_id)
    if target.status == AccountStatus.DISCONNECTED:
        raise reject("kommo", Gone("this account has disconnected mailsync", code="disconnected"))
    try:
        body = await read_body(request)
        delivery = await off_loop(request, len(body), kommo_delivery, target.account_id, body)
    except MailsyncError as exc:
        raise reject("kommo", exc) from None
    if delivery is None:
        return JSONResponse({"accepted": 0})
    new = await request.app.state.resources.inbox.submit(delivery)
    metrics.WEBHOOKS_RECEIVED.labels("kommo").inc()
    return JSONResponse({"accepted": len(delivery.jobs) if new else 0})


def kommo_delivery(account_id: int, body: bytes) -> Delivery | None:
    """The delivery a Kommo body stands for, or None when it asks for no work. CPU only: large
    bodies run it in a worker thread."""
    webhook = parse_webhook(body)
    if webhook.account_id != account_id:
        raise BadRequest("the body names another account than the webhook address",
                         code="account_mismatch")
    work = [(event, spec) for event in webhook.events if (spec := kommo_job(account_id, event))]
    if not work:
        return None
    return Delivery(source="kommo", account_id=account_id,
                    dedupe_key=kommo_dedupe_key(account_id, webhook.events),
                    body=compact_body([event.summary() for event, _ in work]),
                    jobs=tuple(spec for _, spec in work))


async def _esp_target(request: Request) -> tuple[HookTarget, type]:
    """The connection this ESP hook key belongs to, and its provider class; the URL's platform
    must be the connection's."""
    hook_key = request.path_params["hook_key"]
    target = await _cache(request).esp(request, hook_key) if plausible_key(hook_key) else None
    provider = registry.get(target.connection.kind) if target and target.connection else None
    if target is None or provider is None or provider.family != request.path_params["family"]:
        # The metric's label is ours, never the caller's path: its values stay few.
        raise reject("esp", NotFound("no connection has this webhook address", code="unknown_hook"))
    logs.bind_account(target.account_id)
    if target.status == AccountStatus.DISCONNECTED:
        raise reject(provider.family, Gone("this account has disconnected mailsync", code="disconnected"))
    return target, provider


@guarded
async def esp_webhook(request: Request) -> JSONResponse:
    """Each platform verifies and reads its own deliveries (`read_webhook`)."""
    target, provider = await _esp_target(request)
    resources = request.app.state.resources
    try:
        body = await read_body(request)
        deliveries = await off_loop(request, len(body), esp_deliveries, provider, target,
                                    resources, body, request.headers)
    except MailsyncError as exc:
        raise reject(provider.family, exc) from None
    # Submitted together, the deliveries share the inbox writer's commits.
    new = await asyncio.gather(*(resources.inbox.submit(d) for d, _ in deliveries))
    metrics.WEBHOOKS_RECEIVED.labels(provider.family).inc()
    accepted = sum(events for (_, events), is_new in zip(deliveries, new, strict=True) if is_new)
    return JSONResponse({"accepted": accepted})


def esp_deliveries(provider: type, target: HookTarget, resources: Resources, body: bytes,
                   headers: Mapping[str, str]) -> list[tuple[Delivery, int]]:
    """(delivery, number of events in it) for the opt-outs of a platform's body — only
    opt-outs and address changes act on Kommo. CPU only, like `kommo_delivery`."""
    events = provider.read_webhook(target.connection, resources, body=body, headers=headers)
    opt_outs = tuple(event for event in events if event.is_opt_out)
    if len(opt_outs) > INLINE_EVENTS:
        return [(SplitEspBatch(provider.family, opt_outs).delivery(target.account_id), len(opt_outs))]
    return [(ApplyEspEvent(event).delivery(target.account_id, provider.family), 1)
            for event in opt_outs]


@guarded
async def esp_url_check(request: Request) -> JSONResponse:
    """Some platforms GET the URL before they accept a webhook: 200 for a live key there."""
    _, provider = await _esp_target(request)
    if not provider.answers_url_check:
        raise NotFound("this webhook address takes POST only", code="not_found")
    return JSONResponse({"ok": True})


def kommo_job(account_id: int, event: KommoEvent) -> JobSpec | None:
    """Level-triggered: the job names the lead or contact; the payload only carries hints."""
    if event.entity == "lead":
        return ReconcileLead(lead_id=event.id, action=event.action, status_id=event.status_id,
                             pipeline_id=event.pipeline_id,
                             last_modified=event.last_modified).to_spec(account_id)
    if event.entity == "contact":
        return ReconcileContact(contact_id=event.id, action=event.action,
                                last_modified=event.last_modified).to_spec(account_id)
    return None  # companies are not synced


def kommo_dedupe_key(account_id: int, events: tuple[KommoEvent, ...]) -> str:
    """A redelivery (Kommo retries with the same body) hashes the same. A new change hashes
    differently even within the same second — `last_modified` has one-second resolution, so two
    stage moves of a lead in one second differ only in `status_id`/`old_status_id`: the whole
    item is hashed, not just its timestamp."""
    parts = sorted(f"{e.entity}:{e.action}:{e.id}:{_item_digest(e)}" for e in events)
    digest = hashlib.sha256("|".join([str(account_id), *parts]).encode()).hexdigest()
    return f"kommo:{digest}"


def _item_digest(event: KommoEvent) -> str:
    return hashlib.sha256(json.dumps(event.data, sort_keys=True).encode()).hexdigest()[:32]


routes = [
    Route("/webhooks/kommo/{hook_key}", hook_answers.counted(kommo_webhook), methods=["POST"]),
    Route("/webhooks/{family}/{hook_key}", esp_webhook, methods=["POST"]),
    Route("/webhooks/{family}/{hook_key}", esp_url_check, methods=["GET"]),
]

"""A whole small world for sync tests: our resources, the simulated Kommo and one simulated ESP,
wired by host name over in-process ASGI transports, with every outbound request recorded."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2

from backend import activity_log, contact_states, jobs, repository
from backend.app import create_app
from backend.models import EspConnection, MappingRule
from backend.sandbox.kommo import KommoSandbox
from backend.sandbox.kommo_store import PIPELINE_ID
from backend.sandbox.mailchimp import SANDBOX_API_KEY as MC_KEY
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.sandbox.mailerlite import SANDBOX_API_KEY as ML_KEY
from backend.sandbox.mailerlite import create_mailerlite_sandbox
from backend.security import hmac_sha256_hex
from backend.sync.handlers import BATCH_HANDLERS, HANDLERS
from backend.worker import Worker
from tests.conftest import make_settings
from tests.kommo.fixtures import seed_tokens
from tests.polling import eventually

ACCOUNT = 29085424
INCOMING, QUALIFIED, PROPOSAL, WON, LOST = 67548601, 67548607, 67548619, 142, 143
WEBHOOK_SECRET = "whsec-test-0123456789"
HOSTS = {"kommo": "kommo.test", "mailerlite": "mailerlite.test", "mailchimp": "mailchimp.test"}


class Router(httpx2.AsyncBaseTransport):
    """Sends each request to the simulator named by its host and keeps a log of them all."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.transports = {host: httpx2.ASGITransport(app=app) for host, app in apps.items()}
        self.requests: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        transport = self.transports.get(request.url.host)
        if transport is None:
            return httpx2.Response(599, text=f"no simulator at {request.url.host}")
        response = await transport.handle_async_request(request)
        request.extensions["answered"] = response.status_code  # benchmarks tell refusals apart
        return response


class Faulty(httpx2.AsyncBaseTransport):
    """Answers `fault(request)` instead of the simulator while it returns a response."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.fault = lambda request: None
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, status)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.fault(request)
        if response is None:
            response = await self.inner.handle_async_request(request)
        self.arrivals.append((time.monotonic(), response.status_code))
        return response


@dataclass
class World:
    kind: str
    app: Any
    resources: Any
    kommo: KommoSandbox
    esp: Any  # MailerLiteSandbox | MailchimpSandbox
    router: Router
    segments: dict[str, str] = field(default_factory=dict)  # name → id
    list_id: str | None = None

    # --- Kommo side ---------------------------------------------------------------------------

    def contact(self, name: str = "Jane Doe", emails=("jane@shop.io",), **kwargs: Any) -> int:
        return self.kommo.store.add_contact(ACCOUNT, name, emails=emails, **kwargs).id

    def lead(self, stage: int, contacts: list[int]) -> int:
        return self.kommo.store.add_lead(ACCOUNT, status_id=stage, contacts=contacts).id

    def move(self, lead_id: int, stage: int) -> None:
        self.kommo.store.move_lead(ACCOUNT, lead_id, stage)

    def notes(self) -> list[dict[str, Any]]:
        return [n for body in self._bodies("POST", "/api/v4/leads/notes") for n in body]

    # --- ESP side -----------------------------------------------------------------------------

    def subscriber(self, email: str) -> tuple[str | None, set[str]]:
        """(status, segment names) at the ESP; (None, set()) when it does not know the address."""
        names = {v: k for k, v in self.segments.items()}
        if self.kind == "mailerlite":
            sub = self.esp.subscriber(email)
            if sub is None:
                return None, set()
            return sub["status"], {names.get(g["id"], g["id"]) for g in sub.get("groups", [])}
        member = self.esp.member(self.list_id, email)
        if member is None:
            return None, set()
        return member["status"], set(member["tags"])

    def seed_subscriber(self, email: str, status: str, segments: list[str] = ()) -> None:
        ids = [self.segments[s] for s in segments]
        if self.kind == "mailerlite":
            self.esp.add_subscriber(email, status=status, groups=ids)
        else:
            self.esp.add_member(self.list_id, email, status=status, tags=ids)

    def esp_requests(self) -> list[httpx2.Request]:
        return [r for r in self.router.requests if r.url.host == HOSTS[self.kind]]

    def kommo_requests(self) -> list[httpx2.Request]:
        return [r for r in self.router.requests if r.url.host == HOSTS["kommo"]]

    def esp_bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.esp_requests() if r.content]

    def _bodies(self, method: str, path: str) -> list[Any]:
        return [json.loads(r.content) for r in self.kommo_requests()
                if r.method == method and r.url.path == path]

    # --- our side -----------------------------------------------------------------------------

    async def map(self, rules: dict[int, str | None], **options: Any) -> None:
        """stage → segment name, or "remove"/"unsubscribe"."""
        async with self.resources.sessions() as session, session.begin():
            await repository.replace_mapping(session, ACCOUNT, [
                MappingRule(account_id=ACCOUNT, pipeline_id=PIPELINE_ID, status_id=stage,
                            action=target if target in ("remove", "unsubscribe") else "segment",
                            segment_id=None if target in ("remove", "unsubscribe")
                            else self.segments[target])
                for stage, target in rules.items()])
            await repository.save_options(session, ACCOUNT, options, self.labels())

    def labels(self) -> dict[str, dict[str, str]]:
        """What the mapping route stores: the ESP's segment names and Kommo's stage names."""
        pipeline = self.kommo.store.account(ACCOUNT).pipelines[0]
        names = ({gid: name.title() for name, gid in self.segments.items()}
                 if self.kind == "mailerlite" else {tag: tag for tag in self.segments})
        return {"segments": names, "stages": {f"{PIPELINE_ID}:{s['id']}": s["name"]
                                              for s in pipeline["_embedded"]["statuses"]}}

    async def state(self, contact_id: int):
        async with self.resources.sessions() as session:
            return await contact_states.get_contact_state(session, ACCOUNT, contact_id)

    async def deliver_opt_out(self, email: str, *, times: int = 1) -> list[int]:
        """The ESP tells us `email` unsubscribed, through our real webhook route."""
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app),
                                      base_url="https://mailsync.test") as client:
            path, request = self._opt_out(email)
            return [(await client.post(path, **request)).status_code for _ in range(times)]

    def _opt_out(self, email: str):
        if self.kind == "mailerlite":
            body = json.dumps({"id": "31986843064993537", "email": email, "status": "unsubscribed",
                               "unsubscribed_at": "2026-03-26 21:40:57",
                               "event": "subscriber.unsubscribed", "type": "subscriber.unsubscribed"})
            return "/webhooks/mailerlite/mailerlite-hook", {
                "content": body, "headers": {"Signature": hmac_sha256_hex(WEBHOOK_SECRET, body)}}
        form = {"type": "unsubscribe", "fired_at": "2026-03-26 21:40:57", "data[id]": "8a25ff1d98",
                "data[list_id]": self.list_id, "data[email]": email, "data[reason]": "manual"}
        return "/webhooks/mailchimp/mailchimp-hook", {"data": form}

    async def drain(self, within: float = 15.0) -> None:
        """Run the worker until no job is pending or running."""
        stop = asyncio.Event()
        worker = Worker(self.resources, concurrency=4, poll_interval=0.01, handlers=HANDLERS,
                        batch_handlers=BATCH_HANDLERS)
        task = asyncio.create_task(worker.run(stop))
        try:
            await eventually(self._queue_empty, message="the queue did not drain", within=within)
        finally:
            stop.set()
            await task

    async def _queue_empty(self) -> bool:
        async with self.resources.sessions() as session:
            counts = await jobs.counts_by_state(session)
        return not any(counts.get(state) for state in ("pending", "running", "batched"))

    async def activity(self):
        async with self.resources.sessions() as session:
            return list(reversed(await activity_log.list_activity(session, ACCOUNT, limit=500)))


async def open_world(kind: str, database_url: str, engine, *, segments=("qualified", "proposal",
                     "won", "vip"), real_limits: bool = False):
    """Yields a ready World (used by the fixture in tests/sync/conftest.py). `real_limits`: the
    simulators enforce the vendors' published limits (benchmarks)."""
    kommo = KommoSandbox() if real_limits else KommoSandbox(rate_limit=10_000)
    kommo.store.add_account(ACCOUNT, "acme", "Acme Corp")
    esp_app = (create_mailchimp_sandbox() if kind == "mailchimp"
               else create_mailerlite_sandbox() if real_limits
               else create_mailerlite_sandbox(rate_limit=100_000))
    router = Router({HOSTS["kommo"]: kommo.app, HOSTS[kind]: esp_app})
    settings = make_settings(
        database_url, KOMMO_API_BASE_URL=f"http://{HOSTS['kommo']}",
        MAILERLITE_API_BASE_URL=f"http://{HOSTS['mailerlite']}/api",
        MAILCHIMP_API_BASE_URL=f"http://{HOSTS['mailchimp']}/{{dc}}/3.0")
    async with httpx2.AsyncClient(transport=router) as http_client:
        app = create_app(settings, engine=engine, http_client=http_client)
        async with app.router.lifespan_context(app):
            world = World(kind=kind, app=app, resources=app.state.resources, kommo=kommo,
                          esp=esp_app.state.sandbox, router=router)
            await _connect(world, segments)
            router.requests.clear()
            yield world


async def _connect(world: World, segments) -> None:
    resources = world.resources
    await seed_tokens(resources, world.kommo, ACCOUNT)
    if world.kind == "mailerlite":
        world.segments = {name: world.esp.add_group(name.title()) for name in segments}
        key, list_id = ML_KEY, None
    else:
        world.list_id = list_id = world.esp.add_audience("Customers").id
        world.segments = {name: name for name in segments}
        key = MC_KEY
    async with resources.sessions() as session, session.begin():
        await repository.save_esp_connection(session, EspConnection(
            account_id=ACCOUNT, kind=world.kind, api_key_enc=resources.vault.encrypt(key),
            list_id=list_id, hook_key=f"{world.kind}-hook",
            webhook_secret_enc=resources.vault.encrypt(WEBHOOK_SECRET)))

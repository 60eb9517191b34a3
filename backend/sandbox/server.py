"""`mailsync sandbox`: one process serving mailsync, the simulated Kommo, MailerLite and Mailchimp
(under `/simulated/*`) and the page `/sandbox/` that hosts the real widget as Kommo does.

mailsync's Kommo, MailerLite and Mailchimp base URLs point at the mounted simulators, so every
call crosses real HTTP on 127.0.0.1, and `LoopbackTransport` refuses anything else. At start-up the
demo account is installed through the real OAuth callback; `/readyz` answers 503 until it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from backend import db, http, migrations
from backend.app import create_app
from backend.errors import ConfigurationError
from backend.sandbox import demo as demo_data
from backend.sandbox import host, host_api
from backend.sandbox.kommo import KommoSandbox
from backend.sandbox.loopback import LoopbackTransport, loopback_client
from backend.sandbox.mailchimp import MailchimpSandbox, create_mailchimp_sandbox
from backend.sandbox.mailerlite import MailerLiteSandbox, create_mailerlite_sandbox
from backend.settings import Settings, load_settings, read_dotenv

log = logging.getLogger("mailsync.sandbox")
SANDBOX_DATABASE_URL = "sqlite+aiosqlite:///./var/sandbox.db"
START_DEADLINE = 60.0


@dataclass
class World:
    """Everything the host pages reach: the simulators, the demo, the backend and its settings."""

    settings: Settings
    internal_url: str
    kommo: KommoSandbox
    mailerlite: MailerLiteSandbox
    mailchimp: MailchimpSandbox
    demo: demo_data.Demo
    client: httpx2.AsyncClient  # the simulators' webhook sender (loopback only)
    backend: Starlette
    widget_fields: dict[str, Any] = field(default_factory=dict)  # the widget's stored settings


def internal_url(host_name: str, port: int) -> str:
    loopback = host_name in ("0.0.0.0", "::", "", "localhost")  # noqa: S104 (compared, not bound)
    return f"http://{'127.0.0.1' if loopback else host_name}:{port}"


def sandbox_settings(environ: Mapping[str, str], host_name: str, port: int) -> Settings:
    """The environment's settings with every remote replaced by this process's simulators."""
    env = {**read_dotenv(Path(".env")), **environ}
    if (env.get("ENV") or "").strip() == "production":
        raise ConfigurationError("mailsync sandbox is for trying mailsync out; it does not run "
                                 "with ENV=production (use `mailsync serve`)")
    base = internal_url(host_name, port)
    env.update({
        # Real keys would make the simulated Kommo refuse the code exchange: always sandbox keys.
        "KOMMO_CLIENT_ID": "", "KOMMO_CLIENT_SECRET": "",
        "PUBLIC_URL": (env.get("PUBLIC_URL") or "").strip() or base,
        "DATABASE_URL": (env.get("DATABASE_URL") or "").strip() or SANDBOX_DATABASE_URL,
        "KOMMO_API_BASE_URL": f"{base}/simulated/kommo",
        "MAILERLITE_API_BASE_URL": f"{base}/simulated/mailerlite/api",
        "MAILERLITE_CLASSIC_API_BASE_URL": f"{base}/simulated/mailerlite/api/v2",
        "MAILCHIMP_API_BASE_URL": f"{base}/simulated/mailchimp/{{dc}}/3.0",
    })
    return load_settings(env, dotenv=None)


def build(settings: Settings, base_url: str) -> Starlette:
    client = loopback_client(base_url, settings.public_url)
    kommo = KommoSandbox(webhook_client=client)
    mailerlite_app = create_mailerlite_sandbox()
    mailchimp_app = create_mailchimp_sandbox(validator=client)
    demo = demo_data.seed_kommo(kommo.store)
    demo_data.seed_esps(demo, mailerlite_app.state.sandbox, mailchimp_app.state.sandbox)
    outbound = http.build_client(transport=LoopbackTransport(base_url, settings.public_url))
    backend = create_app(settings, http_client=outbound, run_worker=True)
    world = World(settings, base_url, kommo, mailerlite_app.state.sandbox,
                  mailchimp_app.state.sandbox, demo, client, backend)
    app = Starlette(routes=[*host.routes, *host_api.routes,
                            *_mounted("/simulated/kommo", kommo.app),
                            *_mounted("/simulated/mailerlite", mailerlite_app),
                            *_mounted("/simulated/mailchimp", mailchimp_app),
                            Mount("/", app=backend)],
                    lifespan=_lifespan(world, outbound), exception_handlers={Exception: _crash})
    app.state.world = world
    return app


def _mounted(prefix: str, app: ASGIApp) -> list[Mount]:
    """The simulator sees paths as its real counterpart serves them (MailerLite's reads the full
    request path), with the prefix gone."""

    async def stripped(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].removeprefix(prefix) or "/"
        await app(dict(scope, path=path, raw_path=path.encode(), root_path=""), receive, send)

    return [Mount(prefix, app=stripped)]


def _lifespan(world: World, outbound: httpx2.AsyncClient):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _prepare_database(world.settings)
        async with world.backend.router.lifespan_context(world.backend):
            task = asyncio.create_task(_install_demo(world), name="sandbox-demo-install")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await world.client.aclose()
        await outbound.aclose()

    return lifespan


async def _prepare_database(settings: Settings) -> None:
    # Before the embedded worker starts, so no job of a previous run touches the fresh simulators.
    engine = db.create_engine(settings.database_url)
    try:
        await migrations.upgrade(engine)
        async with db.session_factory(engine)() as session, session.begin():
            await demo_data.forget_account(session)
    finally:
        await engine.dispose()


async def _install_demo(world: World) -> None:
    try:
        await _wait_listening(world.client, world.internal_url)
        await demo_data.install(world.client, world.internal_url, world.kommo.store, world.demo)
    except Exception as exc:
        world.demo.error = str(exc) or type(exc).__name__
        log.exception("the demo account could not be installed")
        return
    print(f"\nmailsync sandbox is ready: open {world.settings.public_url}/sandbox/\n", flush=True)


async def _wait_listening(client: httpx2.AsyncClient, base_url: str) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            if (await client.get(f"{base_url}/healthz", timeout=2)).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base_url}/healthz did not answer within {START_DEADLINE:.0f} s")
        await asyncio.sleep(0.05)


async def _crash(request: Any, exc: Exception) -> JSONResponse:
    log.error("sandbox page failed", exc_info=exc)
    return JSONResponse({"error": {"code": "internal_error", "message": str(exc)}}, status_code=500)


class ReadyWhenInstalled:
    """`/readyz` says 503 until the demo account is installed; then mailsync's own check answers."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        demo = self.app.state.world.demo
        if scope["type"] == "http" and scope["path"] == "/readyz" and not demo.installed:
            message = demo.error or "the demo account is being installed"
            await JSONResponse({"error": {"code": "sandbox_starting", "message": message}},
                               status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_sandbox(environ: Mapping[str, str], host_name: str, port: int) -> ASGIApp:
    settings = sandbox_settings(environ, host_name, port)
    return ReadyWhenInstalled(build(settings, internal_url(host_name, port)))


def run(environ: Mapping[str, str], host_name: str, port: int) -> int:
    import uvicorn

    app = create_sandbox(environ, host_name, port)
    print(f"starting the mailsync sandbox on {internal_url(host_name, port)} ...", flush=True)
    uvicorn.run(app, host=host_name, port=port, log_config=None, proxy_headers=True,
                server_header=False, lifespan="on")
    return 0

"""Build the Starlette app: routes, middleware (CORS, body limit, request context), lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx2
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from backend.errors import MailsyncError
from backend.middleware import BodyLimitMiddleware, RequestContextMiddleware
from backend.resources import open_resources
from backend.routes import admin, health, oauth, webhooks, widget
from backend.settings import Settings, load_settings
from backend.sync.handlers import BATCH_HANDLERS, HANDLERS
from backend.throttle import Guards, Throttled
from backend.worker import Worker

log = logging.getLogger("mailsync.app")

# Kommo serves the widget from the account's own subdomain on these three domains (docs/ARCHITECTURE.md §3).
CORS_ORIGIN_REGEX = r"https://[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*\.(kommo\.com|amocrm\.com|amocrm\.ru)"


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    http_client: httpx2.AsyncClient | None = None,
    run_worker: bool = False,
) -> Starlette:
    settings = settings or load_settings()
    app = Starlette(
        routes=[*health.routes, *oauth.routes, *widget.routes, *webhooks.routes, *admin.routes],
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(CORSMiddleware, allow_origin_regex=CORS_ORIGIN_REGEX,
                       allow_methods=["GET", "POST", "PUT", "DELETE"],
                       allow_headers=["X-Auth-Token", "Content-Type"], max_age=600),
            Middleware(BodyLimitMiddleware),
        ],
        exception_handlers={
            MailsyncError: _mailsync_error, HTTPException: _http_error, Exception: _crash},
        lifespan=_lifespan(settings, engine, http_client, run_worker),
    )
    app.state.settings = settings
    app.state.guards = Guards()  # per-process limits on anonymous callers (docs/SECURITY.md)
    return app


def _lifespan(settings: Settings, engine: AsyncEngine | None,
              http_client: httpx2.AsyncClient | None, run_worker: bool):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_resources(settings, engine=engine, http_client=http_client) as shared:
            app.state.resources = shared
            if settings.sandbox_mode:
                log.info("no KOMMO_CLIENT_ID/KOMMO_CLIENT_SECRET: running in sandbox mode")
                if settings.kommo_api_base_url is None:
                    log.warning("sandbox mode without KOMMO_API_BASE_URL: installs are refused "
                                "(only the simulated Kommo may receive the public sandbox keys)")
            if not run_worker:
                yield
                return
            worker = Worker(shared, concurrency=settings.worker_concurrency, handlers=HANDLERS,
                            batch_handlers=BATCH_HANDLERS)
            shared.inbox.on_commit = worker.wake  # new work starts at once, not at the next poll
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop), name="embedded-worker")
            try:
                yield
            finally:
                stop.set()
                await task

    return lifespan


async def _mailsync_error(request: Request, exc: MailsyncError) -> JSONResponse:
    if exc.status_code >= 500:
        log.error("%s: %s", exc.code, exc.message)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": {"code": code, "message": exc.detail}},
                        status_code=exc.status_code, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return JSONResponse({"error": {"code": "internal_error", "message": "Internal server error"}},
                        status_code=500)

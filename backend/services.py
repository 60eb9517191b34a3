"""What web routes and workers share for the life of a process, opened and closed in one place."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import db, http
from backend.ratelimit import RateLimiter
from backend.security import Signer, Vault
from backend.settings import Settings
from backend.sync.inbox import Inbox


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: Vault
    signer: Signer
    http: httpx2.AsyncClient
    limiter: RateLimiter
    inbox: Inbox


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    http_client: httpx2.AsyncClient | None = None,
) -> AsyncIterator[Services]:
    """Engine, HTTP client and the rest; what was passed in is left open for its owner."""
    own_engine = engine or db.create_engine(settings.database_url)
    client = http_client or http.build_client()
    sessions = db.session_factory(own_engine)
    services = Services(
        settings=settings, engine=own_engine, sessions=sessions,
        vault=Vault(settings.encryption_keys), signer=Signer(settings.secret_key), http=client,
        limiter=RateLimiter(sessions), inbox=Inbox(sessions))
    try:
        yield services
    finally:
        await services.inbox.close()
        if http_client is None:
            await client.aclose()
        if engine is None:
            await own_engine.dispose()

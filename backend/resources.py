"""What web routes and workers share for the life of a process, opened and closed in one place."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import db, http, usage
from backend.inbox import Inbox
from backend.ratelimit import LocalRateLimiter, RateLimiter
from backend.security import Signer, Vault
from backend.settings import Settings


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    reads: async_sessionmaker[AsyncSession]  # read-only work: never queues behind SQLite writers
    vault: Vault
    signer: Signer
    http: httpx2.AsyncClient
    limiter: RateLimiter | LocalRateLimiter
    inbox: Inbox


def _inbox(url: str) -> Inbox:
    if not db.is_sqlite(url):
        return Inbox(lambda: db.create_sync_engine(url))
    checkpointer = db.create_sync_engine(url)

    def checkpoint() -> None:
        # A raw connection: no BEGIN IMMEDIATE, so the writer is never made to wait for it.
        connection = checkpointer.raw_connection()
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    return Inbox(lambda: db.create_sync_engine(url, checkpoints=False), checkpoint=checkpoint)


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    http_client: httpx2.AsyncClient | None = None,
) -> AsyncIterator[Resources]:
    """Engine, HTTP client and the rest; what was passed in is left open for its owner."""
    own_engine = engine or db.create_engine(settings.database_url)
    client = http_client or http.build_client()
    sessions = db.session_factory(own_engine)
    url = own_engine.url.render_as_string(hide_password=False)
    resources = Resources(
        settings=settings, engine=own_engine, sessions=sessions,
        reads=db.read_only_session_factory(own_engine),
        vault=Vault(settings.encryption_keys), signer=Signer(settings.secret_key), http=client,
        limiter=LocalRateLimiter() if db.is_sqlite(url) else RateLimiter(sessions),
        inbox=_inbox(url))
    flusher = usage.Flusher(sessions, client)
    flusher.start()
    try:
        yield resources
    finally:
        await flusher.stop()  # the last counts reach the table before the engine closes
        await resources.inbox.close()
        if http_client is None:
            await client.aclose()
        if engine is None:
            await own_engine.dispose()

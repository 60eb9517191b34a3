"""Async engine and session factory for SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.errors import ConfigurationError

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+psycopg")
READ_ONLY = "mailsync_read_only"


def is_sqlite(engine_or_url: AsyncEngine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigurationError(
            f"DATABASE_URL must start with one of {', '.join(SUPPORTED_DRIVERS)} "
            f"(got {parsed.drivername!r})")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed.database, url, **kwargs)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_engine(database: str | None, url: str, **kwargs: Any) -> AsyncEngine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
    _configure_sqlite(engine.sync_engine)
    return engine


def create_sync_engine(url: str, *, checkpoints: bool = True) -> Engine:
    """A blocking engine on the same database, for work that runs in its own thread (the
    inbox writer): the same pragmas and transaction mode as the async engine."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa_create_engine(parsed.set(drivername="sqlite+pysqlite"),
                                  connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine, checkpoints=checkpoints)
        return engine
    return sa_create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def _configure_sqlite(engine: Engine, *, checkpoints: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer; busy_timeout makes writers queue
        # instead of failing with "database is locked".
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        if not checkpoints:
            # This connection's commits never stop to copy the WAL back into the database
            # (and fsync it); its owner checkpoints from another thread instead.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()
        # Take SQLite's write lock when a transaction begins, not on its first write: a deferred
        # transaction that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT, no busy
        # wait) when another connection wrote in between. IMMEDIATE makes writers queue instead.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Read-only sessions (`read_only`) begin deferred: in WAL mode they neither take nor
        # wait for the write lock, so hot reads never queue behind writers.
        deferred = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def insert_for(bind: AsyncSession | Connection) -> Callable[..., Any]:
    """The dialect's INSERT (both have ON CONFLICT and RETURNING)."""
    dialect = bind.dialect if isinstance(bind, Connection) else bind.bind.dialect
    return pg_insert if dialect.name == "postgresql" else sqlite_insert


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def read_only_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that only read (no write may be made through them)."""
    return session_factory(engine.execution_options(**{READ_ONLY: True}))

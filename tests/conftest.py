"""Shared fixtures. Database tests run once per engine: SQLite always, PostgreSQL too when
TEST_DATABASE_URL is set (each test then gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import httpx2
import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from backend import db, migrations, repository
from backend.app import create_app
from backend.resources import Resources
from backend.settings import Settings, load_settings

PG_URL = os.environ.get("TEST_DATABASE_URL")
ENGINES = ["sqlite", *(["postgresql"] if PG_URL else [])]
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _libpq_dsn(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set (PostgreSQL tests run in CI)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = _libpq_dsn(PG_URL)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/mailsync.db"
    return request.getfixturevalue("pg_schema_url")


def make_settings(database_url: str, **overrides: str) -> Settings:
    env = {"ENV": "test", "DATABASE_URL": database_url, "SECRET_KEY": TEST_SECRET_KEY,
           "PUBLIC_URL": "https://mailsync.test", **overrides}
    return load_settings(env, dotenv=None)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    await migrations.upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Starlette]:
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def resources(app: Starlette) -> Resources:
    return app.state.resources


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def sessions(engine):
    return db.session_factory(engine)


@pytest.fixture
def make_accounts(sessions):
    async def make(*account_ids, status="active"):
        async with sessions() as session, session.begin():
            for account_id in account_ids:
                account = await repository.upsert_account(
                    session, account_id, host=f"a{account_id}.kommo.com", subdomain=f"a{account_id}")
                account.status = status
        return account_ids

    return make

"""Alembic migrations, shipped inside the package so an installed wheel can migrate.

`upgrade(engine)` brings any database to head and is safe to run from several processes at once
(PostgreSQL serialises them with an advisory lock); `current_and_head(engine)` serves /readyz.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent
# Any fixed 64-bit number: the advisory lock every migrating process waits on.
_ADVISORY_LOCK_ID = 7_203_114_511


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_sync(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    command.upgrade(alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade_sync)


def _current_sync(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_and_head(engine: AsyncEngine) -> tuple[str | None, str | None]:
    async with engine.connect() as conn:
        current = await conn.run_sync(_current_sync)
    return current, head_revision()

"""Alembic environment: runs on the connection handed in by `backend.migrations.upgrade`, or on
`sqlalchemy.url` (e.g. `alembic revision --autogenerate`) through the async engine."""

import asyncio

from alembic import context
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import backend.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from backend.db import create_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.run_sync(run_migrations)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    asyncio.run(run_on_url(config.get_main_option("sqlalchemy.url")))

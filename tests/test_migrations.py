from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from backend import db, migrations

TABLES = {"account", "kommo_token", "esp_connection", "mapping_rule", "account_options",
          "contact_state", "inbox_event", "job", "activity", "rate_bucket", "queue_turn",
          "note_receipt", "concurrency_slot", "backfill", "vendor_usage", "activity_hourly",
          "kommo_catchup", "hook_answer", "alembic_version"}


async def test_upgrade_creates_every_table_and_is_idempotent(database_url):
    engine = db.create_engine(database_url)
    try:
        assert await migrations.current_and_head(engine) == (None, migrations.head_revision())
        await migrations.upgrade(engine)
        await migrations.upgrade(engine)  # running twice is harmless
        current, head = await migrations.current_and_head(engine)
        assert current == head == "0006"
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert names >= TABLES
    finally:
        await engine.dispose()


async def test_migrations_match_the_models(engine):
    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []

"""`kommo_catchup`: how far each account's Kommo event log was read (`sync/catchup.py`), and
which accounts' sweeps are due. The two unscoped queries say so in their names' docstrings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import insert_for
from backend.models import Account, AccountStatus, KommoCatchup


async def get_kommo_catchup(session: AsyncSession, account_id: int) -> KommoCatchup | None:
    return await session.get(KommoCatchup, account_id)


async def save_kommo_catchup(session: AsyncSession, catchup: KommoCatchup) -> None:
    """Insert or update; the row may come from another (closed) session."""
    await session.merge(catchup)
    await session.flush()


async def accounts_without_catchup(session: AsyncSession) -> Sequence[int]:
    """Unscoped by design: the active accounts whose catch-up the worker has not scheduled yet."""
    scheduled = exists().where(KommoCatchup.account_id == Account.id)
    query = (select(Account.id).where(Account.status == AccountStatus.ACTIVE, ~scheduled)
             .order_by(col(Account.id)))
    return (await session.exec(query)).all()


async def add_kommo_catchups(session: AsyncSession, rows: Sequence[KommoCatchup]) -> None:
    """New cursors; one another process added meanwhile wins (no error)."""
    if not rows:
        return
    statement = insert_for(session)(KommoCatchup.__table__).on_conflict_do_nothing(
        index_elements=["account_id"])
    connection = await session.connection()
    await connection.execute(statement, [
        {"account_id": r.account_id, "next_at": r.next_at, "cursor_at": r.cursor_at, "window_to": None,
         "next_page": 1, "seen": {}, "email_field_id": None, "webhook_missing_since": None,
         "last_run_at": None, "enqueued_total": 0} for r in rows])


async def claim_due_catchups(session: AsyncSession, now: datetime, next_at: datetime) -> list[int]:
    """Unscoped by design: the active accounts whose sweep is due, each moved on to `next_at` in
    the same statement, so of two processes claiming at once only one gets each account."""
    active = select(Account.id).where(Account.status == AccountStatus.ACTIVE)
    result = await session.exec(
        update(KommoCatchup)
        .where(col(KommoCatchup.next_at) <= now, col(KommoCatchup.account_id).in_(active))
        .values(next_at=next_at).returning(KommoCatchup.account_id)
        .execution_options(synchronize_session=False))
    return sorted(row[0] for row in result.all())

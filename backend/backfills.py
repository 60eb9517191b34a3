"""`backfill`: the runs of the initial sync of an account's existing leads (`sync/backfill.py`)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.models import Backfill


async def add_backfill(session: AsyncSession, backfill: Backfill) -> Backfill:
    session.add(backfill)
    await session.flush()
    return backfill


async def get_backfill(session: AsyncSession, account_id: int, backfill_id: int) -> Backfill | None:
    query = select(Backfill).where(Backfill.account_id == account_id, Backfill.id == backfill_id)
    return (await session.exec(query)).first()


async def latest_backfill(session: AsyncSession, account_id: int) -> Backfill | None:
    query = (select(Backfill).where(Backfill.account_id == account_id)
             .order_by(col(Backfill.id).desc()).limit(1))
    return (await session.exec(query)).first()

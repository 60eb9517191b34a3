"""What the operator sees per account besides the queue (`/admin`, `mailsync accounts`): calls
and 429s per vendor in the current and the previous UTC hour, and the newest backfill run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import usage
from backend.activity_hourly import truncate_hour
from backend.models import Backfill


@dataclass(frozen=True)
class AccountOverview:
    hour: datetime  # the current UTC hour, which `this_hour` covers so far
    this_hour: dict[str, usage.Usage]  # by vendor
    previous_hour: dict[str, usage.Usage]
    backfill: Backfill | None


async def load(
    session: AsyncSession, account_ids: Sequence[int], now: datetime
) -> dict[int, AccountOverview]:
    hour = truncate_hour(now)
    this_hour = await usage.by_account(session, account_ids, hour)
    previous_hour = await usage.by_account(session, account_ids, hour - timedelta(hours=1))
    backfills = await _latest_backfills(session, account_ids)
    return {account_id: AccountOverview(hour, this_hour[account_id], previous_hour[account_id],
                                        backfills.get(account_id))
            for account_id in account_ids}


async def _latest_backfills(
    session: AsyncSession, account_ids: Sequence[int]
) -> dict[int, Backfill]:
    """The newest run of each account (kept here, read-only, until the backfill's own module
    offers one)."""
    newest = (select(func.max(Backfill.id)).where(col(Backfill.account_id).in_(list(account_ids)))
              .group_by(col(Backfill.account_id)))
    rows = (await session.exec(select(Backfill).where(col(Backfill.id).in_(newest)))).all()
    return {row.account_id: row for row in rows}

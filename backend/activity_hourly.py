"""The `activity_hourly` table: activity entries per account, UTC hour and outcome.

`activity_log.add_activities` counts each entry here in the same transaction, so the chart of the last
48 hours agrees with the entries written, while the `activity` table itself stays capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import db
from backend.models import ActivityHourly

OUTCOMES = ("ok", "skipped", "failed")
CHART_HOURS = 48


@dataclass(frozen=True)
class HourCounts:
    hour: datetime
    ok: int = 0
    skipped: int = 0
    failed: int = 0


def truncate_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def count(session: AsyncSession, account_id: int, outcome: str, at: datetime,
                n: int = 1) -> None:
    """`n` more entries of this outcome in the hour of `at`; an upsert that adds, so concurrent
    writers of one hour never lose a count."""
    insert = db.insert_for(session)
    table = ActivityHourly.__table__
    statement = insert(table).values(account_id=account_id, hour=truncate_hour(at),
                                     outcome=outcome, count=n)
    statement = statement.on_conflict_do_update(
        index_elements=["account_id", "hour", "outcome"],
        set_={"count": table.c.count + statement.excluded.count})
    await session.exec(statement)


async def series(
    session: AsyncSession, account_ids: Sequence[int], now: datetime, hours: int = CHART_HOURS
) -> dict[int, list[HourCounts]]:
    """Per account, `hours` rows oldest first ending with the current (partial) hour; hours
    without entries are zeros."""
    last = truncate_hour(now)
    first = last - timedelta(hours=hours - 1)
    query = select(ActivityHourly).where(col(ActivityHourly.account_id).in_(list(account_ids)),
                                         col(ActivityHourly.hour) >= first,
                                         col(ActivityHourly.hour) <= last)
    found: dict[tuple[int, datetime], dict[str, int]] = {}
    for row in (await session.exec(query)).all():
        found.setdefault((row.account_id, row.hour), {})[row.outcome] = row.count
    return {account_id: list(_fill(account_id, first, hours, found)) for account_id in account_ids}


def _fill(account_id: int, first: datetime, hours: int,
          found: dict[tuple[int, datetime], dict[str, int]]) -> Iterable[HourCounts]:
    for offset in range(hours):
        hour = first + timedelta(hours=offset)
        counts = found.get((account_id, hour), {})
        yield HourCounts(hour, **{outcome: counts.get(outcome, 0) for outcome in OUTCOMES})


async def prune(session: AsyncSession, before: datetime) -> None:
    """Every account's hours older than `before` (retention; run by `usage.Flusher`)."""
    await session.exec(delete(ActivityHourly).where(col(ActivityHourly.hour) < before))

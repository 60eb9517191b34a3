"""What the operator sees per account besides the queue (`/admin`, `mailsync accounts`): calls
and 429s per vendor in the current and the previous UTC hour, the newest backfill run, and the
vendors holding the account's work (down, slowing us down, refusing it) until when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import circuit, hook_answers, usage
from backend.activity_hourly import truncate_hour
from backend.models import Backfill


@dataclass(frozen=True)
class AccountOverview:
    hour: datetime  # the current UTC hour, which `this_hour` covers so far
    this_hour: dict[str, usage.Usage]  # by vendor
    previous_hour: dict[str, usage.Usage]
    backfill: Backfill | None
    paused: dict[str, Paused] = field(default_factory=dict)  # by vendor (service name)
    # Our answers to Kommo's webhooks in the last 2 hours, (good, bad): Kommo disables the webhook
    # past 100 bad ones (`hook_answers.py`).
    kommo_answers: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Paused:
    reason: str  # "outage", "rate" (429) or "refused" (Kommo 402/403)
    until: datetime


async def load(
    session: AsyncSession, account_ids: Sequence[int], now: datetime
) -> dict[int, AccountOverview]:
    hour = truncate_hour(now)
    this_hour = await usage.by_account(session, account_ids, hour)
    previous_hour = await usage.by_account(session, account_ids, hour - timedelta(hours=1))
    backfills = await _latest_backfills(session, account_ids)
    holds = await circuit.in_force(session, now.timestamp())
    answers = await hook_answers.answers_last_2h(session, list(account_ids), now)
    return {account_id: AccountOverview(hour, this_hour[account_id], previous_hour[account_id],
                                        backfills.get(account_id), _paused(holds.get(account_id, [])),
                                        answers.get(account_id, (0, 0)))
            for account_id in account_ids}


def _paused(holds: list[circuit.Hold]) -> dict[str, Paused]:
    found: dict[str, Paused] = {}
    for hold in sorted(holds, key=lambda h: h.until):  # the latest end per vendor wins
        found[hold.service] = Paused(hold.reason, datetime.fromtimestamp(hold.until, UTC))
    return found


async def _latest_backfills(
    session: AsyncSession, account_ids: Sequence[int]
) -> dict[int, Backfill]:
    """The newest run of each account (kept here, read-only, until the backfill's own module
    offers one)."""
    newest = (select(func.max(Backfill.id)).where(col(Backfill.account_id).in_(list(account_ids)))
              .group_by(col(Backfill.account_id)))
    rows = (await session.exec(select(Backfill).where(col(Backfill.id).in_(newest)))).all()
    return {row.account_id: row for row in rows}

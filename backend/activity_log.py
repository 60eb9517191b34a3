"""The `activity` table: the per-account log the widget shows, newest first, in the admin's words.

Entries are trimmed on insert; failures have a cap of their own, so a stream of successes never
pushes the last failure out of the admin's sight. Each entry is also counted per hour
(`activity_hourly.py`) for the 48-hour chart, in the same transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import activity_hourly
from backend.models import Activity

# Rows kept per account, trimmed on insert. Failures have a cap of their own, so a stream of
# successes can never push the last failure out of the admin's sight.
ACTIVITY_CAP = 500
FAILURE_CAP = 200


async def add_activity(session: AsyncSession, account_id: int, activity: Activity) -> None:
    await add_activities(session, account_id, [activity])


async def add_activities(session: AsyncSession, account_id: int, activities: Sequence[Activity]) -> None:
    """Entries of one account (a batch's at once): one flush, one hourly count per hour and
    outcome, one trim per class (failures or the rest) beyond its cap."""
    for activity in activities:
        activity.account_id = account_id
        session.add(activity)
    await session.flush()
    hours = Counter((a.outcome, activity_hourly.truncate_hour(a.at)) for a in activities)
    for (outcome, hour), n in hours.items():
        await activity_hourly.count(session, account_id, outcome, hour, n)
    for failed in {a.outcome == "failed" for a in activities}:
        await _trim(session, account_id, failed)


async def _trim(session: AsyncSession, account_id: int, failed: bool) -> None:
    same_class = (col(Activity.outcome) == "failed") if failed else (col(Activity.outcome) != "failed")
    cutoff = (select(Activity.id).where(Activity.account_id == account_id, same_class)
              .order_by(col(Activity.id).desc()).offset(FAILURE_CAP if failed else ACTIVITY_CAP)
              .limit(1))
    oldest_kept = (await session.exec(cutoff)).first()
    if oldest_kept is not None:
        await session.exec(delete(Activity).where(col(Activity.account_id) == account_id, same_class,
                                                  col(Activity.id) <= oldest_kept))


async def list_activity(
    session: AsyncSession, account_id: int, limit: int = 50
) -> Sequence[Activity]:
    query = (select(Activity).where(Activity.account_id == account_id)
             .order_by(col(Activity.id).desc()).limit(limit))
    return (await session.exec(query)).all()

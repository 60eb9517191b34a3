"""Batches on the job table: a running job takes the other due jobs of its account and kind along
(state `batched`, same worker, same lease), so one run reads and writes many leads at once.

While they run, a new event for one of those leads finds no pending job to coalesce with and
queues a fresh one, which runs after the batch: nothing that changes during a batch is lost.
Batched jobs settle one by one like running ones (`jobs.finish`, `jobs.fail`, `jobs.release`),
and a dead worker's batched jobs go back to pending when their lease runs out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.jobs import ClaimedJob
from backend.models import Job, JobState, utcnow


def _due(leader: ClaimedJob, now) -> Any:
    return (select(Job.id).where(col(Job.account_id) == leader.account_id, col(Job.kind) == leader.kind,
                                 col(Job.state) == JobState.PENDING, col(Job.run_at) <= now))


async def any_due(session: AsyncSession, leader: ClaimedJob) -> bool:
    """A read first: most runs have nobody to take along, and on SQLite a write transaction
    would queue behind the webhook writer for nothing."""
    return (await session.exec(_due(leader, utcnow()).limit(1))).first() is not None


async def take_followers(session: AsyncSession, leader: ClaimedJob, *, worker_id: str, limit: int,
                         lease: timedelta) -> list[ClaimedJob]:
    """Up to `limit` due pending jobs of the leader's account and kind, oldest first. No other
    worker competes for them: the leader holds the account's one running slot."""
    now = utcnow()
    due = _due(leader, now).order_by(col(Job.run_at), col(Job.id)).limit(limit)
    rows = (await session.exec(
        update(Job).where(col(Job.id).in_(due.scalar_subquery()), col(Job.state) == JobState.PENDING)
        .values(state=JobState.BATCHED, attempts=Job.attempts + 1, lease_until=now + lease,
                claimed_by=worker_id, started_at=now)
        .returning(Job.id, Job.account_id, Job.kind, Job.payload, Job.attempts)
        .execution_options(synchronize_session=False))).all()
    return sorted((ClaimedJob(*row) for row in rows), key=lambda job: job.id)


async def defer_due(session: AsyncSession, account_id: int, kind: str, seconds: float) -> int:
    """A vendor told this account's batch to come back later: the account's other due jobs of the
    kind wait as long, instead of each reading Kommo only to be refused in turn."""
    until = utcnow() + timedelta(seconds=seconds)
    result = await session.exec(
        update(Job).where(col(Job.account_id) == account_id, col(Job.kind) == kind,
                          col(Job.state) == JobState.PENDING, col(Job.run_at) < until)
        .values(run_at=until).execution_options(synchronize_session=False))
    return result.rowcount


async def defer_account(session: AsyncSession, account_id: int, until) -> int:
    """A vendor the account's work needs is held until `until`: every pending job of the account
    due before then waits as long (jobs due later keep their time)."""
    result = await session.exec(
        update(Job).where(col(Job.account_id) == account_id, col(Job.state) == JobState.PENDING,
                          col(Job.run_at) < until)
        .values(run_at=until).execution_options(synchronize_session=False))
    return result.rowcount

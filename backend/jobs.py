"""The job queue: enqueue with coalescing, claim fairly, finish with retry, backoff or dead letter.

Guarantees, on SQLite and PostgreSQL alike:
- a pending job per coalesce key at most (`ux_job_pending_coalesce_key`): new events for a lead
  that already has a pending job are absorbed by it;
- a running job per account at most (`ux_job_running_account`): a second claim for the same
  account fails in the database, whatever the number of worker processes;
- a claimed job carries a lease; a job whose worker died is put back when its lease runs out.
Claims go to the account whose last claim is oldest (`queue_turn`), so accounts take turns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import insert_for
from backend.models import Account, AccountStatus, InboxEvent, Job, JobState, QueueTurn, utcnow

MAX_ATTEMPTS = 12
BACKOFF_BASE = 2.0
BACKOFF_CAP = 3600.0
LEASE = timedelta(seconds=120)
KEEP_DONE_JOBS = timedelta(days=7)
KEEP_INBOX = timedelta(days=30)  # long enough that a late redelivery is still recognised
CLAIMED = (JobState.RUNNING, JobState.BATCHED)  # held by a worker under a lease


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue: `coalesce_key` decides which pending job absorbs it."""

    account_id: int
    kind: str
    coalesce_key: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    account_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this run


async def enqueue(session: AsyncSession, specs: list[JobSpec], *, run_at: datetime | None = None) -> None:
    """Insert pending jobs; a pending job with the same coalesce key absorbs the new one (its
    payload is refreshed, its place in the queue kept)."""
    connection = await session.connection()
    await connection.run_sync(enqueue_sync, specs, run_at=run_at)


def enqueue_sync(connection: Connection, specs: list[JobSpec], *, run_at: datetime | None = None) -> None:
    """`enqueue` on a blocking connection (the inbox writer thread)."""
    if not specs:
        return
    now = run_at or utcnow()
    statement = insert_for(connection)(Job.__table__)
    statement = statement.on_conflict_do_update(
        index_elements=["coalesce_key"], index_where=text("state = 'pending'"),
        set_={"payload": statement.excluded.payload})
    rows = [{"account_id": s.account_id, "kind": s.kind, "coalesce_key": s.coalesce_key,
             "payload": s.payload, "state": JobState.PENDING, "run_at": now, "attempts": 0,
             "created_at": now, "last_error": None, "lease_until": None, "claimed_by": None,
             "started_at": None, "finished_at": None} for s in specs]
    # One cached statement with many parameter sets: compiling a multi-row VALUES per call
    # costs more than the write itself.
    connection.execute(statement, rows)


def backoff_seconds(attempts: int, retry_after: float | None = None, *, rng=random) -> float:
    """2 s, 4 s, 8 s … capped at 1 h, with ±20 % jitter; never sooner than `retry_after`."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    delay = min(BACKOFF_CAP, delay * rng.uniform(0.8, 1.2))
    return max(delay, retry_after or 0.0)


async def release_expired_leases(session: AsyncSession) -> int:
    """Jobs whose worker died go back to pending (or end, when a newer pending twin exists —
    reconciling is level-triggered, so the twin does the same work)."""
    now = utcnow()
    twin = aliased(Job)
    expired = and_(col(Job.state).in_(CLAIMED), col(Job.lease_until) < now)
    # A pending twin does the same work; so does a newer expired one (a coalesce key is unique
    # among pending jobs, so only one of several expired twins may go back).
    has_twin = exists().where(twin.coalesce_key == Job.coalesce_key, or_(
        twin.state == JobState.PENDING,
        and_(col(twin.state).in_(CLAIMED), twin.lease_until < now, twin.id > Job.id)))
    superseded = await session.exec(
        update(Job).where(expired, has_twin)
        .values(state=JobState.DONE, finished_at=now, lease_until=None,
                last_error="lease expired; superseded by a newer pending job")
        .execution_options(synchronize_session=False))
    released = await session.exec(
        update(Job).where(expired)
        .values(state=JobState.PENDING, lease_until=None, claimed_by=None, run_at=now,
                last_error="lease expired (worker stopped mid-job)")
        .execution_options(synchronize_session=False))
    return superseded.rowcount + released.rowcount


async def _candidates(session: AsyncSession, limit: int, now: datetime) -> list[tuple[int, int]]:
    """(job id, account id): each ready account's next job, longest-waiting account first."""
    running = aliased(Job)
    ranked = (
        select(Job.id, Job.account_id,
               func.row_number().over(partition_by=Job.account_id,
                                      order_by=(Job.run_at, Job.id)).label("rank"))
        .join(Account, col(Account.id) == Job.account_id)
        .where(col(Job.state) == JobState.PENDING, col(Job.run_at) <= now,
               col(Account.status) == AccountStatus.ACTIVE,
               ~exists().where(running.account_id == Job.account_id,
                               running.state == JobState.RUNNING))
        .subquery())
    query = (select(ranked.c.id, ranked.c.account_id)
             .outerjoin(QueueTurn, col(QueueTurn.account_id) == ranked.c.account_id)
             .where(ranked.c.rank == 1)
             .order_by(col(QueueTurn.last_claimed_at).asc().nulls_first(), ranked.c.id)
             .limit(limit))
    return [(row[0], row[1]) for row in (await session.exec(query)).all()]


async def claim(session: AsyncSession, *, worker_id: str, limit: int,
                lease: timedelta = LEASE) -> list[ClaimedJob]:
    """Claim up to `limit` due jobs of distinct accounts; the caller commits."""
    now = utcnow()
    claimed: list[ClaimedJob] = []
    # Over-fetch: under contention other workers take some candidates (SKIP LOCKED) first.
    for job_id, account_id in await _candidates(session, limit * 4, now):
        if len(claimed) == limit:
            break
        try:
            async with session.begin_nested():
                job = await _claim_one(session, job_id, worker_id, now, lease)
                if job is None:
                    continue
                await _take_turn(session, account_id, now)
        except IntegrityError:
            continue  # another worker claimed a job of this account first
        claimed.append(job)
    return claimed


async def _claim_one(session: AsyncSession, job_id: int, worker_id: str, now: datetime,
                     lease: timedelta) -> ClaimedJob | None:
    if session.bind.dialect.name == "postgresql":
        # Another worker holding this row is claiming it: move on instead of queueing behind it.
        locked = (await session.exec(
            select(Job.id).where(col(Job.id) == job_id, col(Job.state) == JobState.PENDING)
            .with_for_update(skip_locked=True))).first()
        if locked is None:
            return None
    row = (await session.exec(
        update(Job).where(col(Job.id) == job_id, col(Job.state) == JobState.PENDING)
        .values(state=JobState.RUNNING, attempts=Job.attempts + 1, lease_until=now + lease,
                claimed_by=worker_id, started_at=now)
        .returning(Job.id, Job.account_id, Job.kind, Job.payload, Job.attempts)
        .execution_options(synchronize_session=False))).first()
    return None if row is None else ClaimedJob(*row)


async def _take_turn(session: AsyncSession, account_id: int, now: datetime) -> None:
    insert = insert_for(session)
    statement = insert(QueueTurn).values(account_id=account_id, last_claimed_at=now)
    await session.exec(statement.on_conflict_do_update(
        index_elements=["account_id"], set_={"last_claimed_at": now}))


async def renew_lease(session: AsyncSession, job_ids: list[int], worker_id: str,
                      lease: timedelta = LEASE) -> int:
    """Extend the lease of a running job and of the jobs batched with it."""
    result = await session.exec(
        update(Job).where(col(Job.id).in_(job_ids), col(Job.state).in_(CLAIMED),
                          col(Job.claimed_by) == worker_id)
        .values(lease_until=utcnow() + lease).execution_options(synchronize_session=False))
    return result.rowcount


async def finish(session: AsyncSession, job_id: int, *, error: str | None = None) -> None:
    """Done. `error` records a permanent outcome (not retried)."""
    await finish_many(session, [job_id], error=error)


async def finish_many(session: AsyncSession, job_ids: list[int], *, error: str | None = None) -> None:
    """Done, in one statement (a batch's successes)."""
    await session.exec(
        update(Job).where(col(Job.id).in_(job_ids))
        .values(state=JobState.DONE, finished_at=utcnow(), lease_until=None, last_error=error)
        .execution_options(synchronize_session=False))


async def fail(
    session: AsyncSession, job: ClaimedJob, error: str, *, retry_after: float | None = None
) -> str:
    """A retryable failure: back to pending after a backoff, or dead after MAX_ATTEMPTS.
    Returns the state the job ended in."""
    now = utcnow()
    if job.attempts >= MAX_ATTEMPTS:
        values = {"state": JobState.DEAD, "finished_at": now}
    else:
        delay = backoff_seconds(job.attempts, retry_after)
        values = {"state": JobState.PENDING, "run_at": now + timedelta(seconds=delay)}
    try:
        async with session.begin_nested():
            await session.exec(
                update(Job).where(col(Job.id) == job.id)
                .values(last_error=error[:2000], lease_until=None, claimed_by=None, **values)
                .execution_options(synchronize_session=False))
    except IntegrityError:
        # A newer event already queued a pending twin: it will redo this work.
        await finish(session, job.id, error=f"{error[:1900]} (superseded by a newer pending job)")
        return JobState.DONE
    return values["state"]


async def release(session: AsyncSession, job_id: int) -> None:
    """Shutdown: give an unfinished job back without counting the attempt."""
    try:
        async with session.begin_nested():
            await session.exec(
                update(Job).where(col(Job.id) == job_id, col(Job.state).in_(CLAIMED))
                .values(state=JobState.PENDING, attempts=Job.attempts - 1, lease_until=None,
                        claimed_by=None).execution_options(synchronize_session=False))
    except IntegrityError:
        await finish(session, job_id, error="released at shutdown; superseded by a newer pending job")


async def put_back(session: AsyncSession, job_ids: list[int], run_at: datetime) -> None:
    """The vendor these jobs need is held (down, slowing us, refusing the account): they wait
    until `run_at` without counting the attempt. One whose newer pending twin exists ends, the
    twin doing its work."""
    if not job_ids:
        return
    twin = aliased(Job)
    mine = and_(col(Job.id).in_(job_ids), col(Job.state).in_(CLAIMED))
    has_twin = exists().where(twin.coalesce_key == Job.coalesce_key, twin.state == JobState.PENDING)
    await session.exec(
        update(Job).where(mine, has_twin)
        .values(state=JobState.DONE, finished_at=utcnow(), lease_until=None,
                last_error="put back while its vendor was held; superseded by a newer pending job")
        .execution_options(synchronize_session=False))
    await session.exec(
        update(Job).where(mine)
        .values(state=JobState.PENDING, attempts=Job.attempts - 1, run_at=run_at, lease_until=None,
                claimed_by=None).execution_options(synchronize_session=False))


async def retry_dead(session: AsyncSession, account_id: int, job_id: int) -> bool:
    """Operator's retry from /admin: a dead job goes back to pending with fresh attempts."""
    try:
        async with session.begin_nested():
            result = await session.exec(
                update(Job).where(col(Job.id) == job_id, col(Job.account_id) == account_id,
                                  col(Job.state) == JobState.DEAD)
                .values(state=JobState.PENDING, attempts=0, run_at=utcnow(), finished_at=None)
                .execution_options(synchronize_session=False))
    except IntegrityError:
        return False  # a pending job for the same key already exists and will do the work
    return result.rowcount == 1


async def run_now(session: AsyncSession, account_id: int) -> int:
    """The cause of the account's failures was fixed (a new ESP key): its pending jobs stop
    waiting out their backoff. Returns how many were brought forward."""
    now = utcnow()
    result = await session.exec(
        update(Job).where(col(Job.account_id) == account_id, col(Job.state) == JobState.PENDING,
                          col(Job.run_at) > now)
        .values(run_at=now).execution_options(synchronize_session=False))
    return result.rowcount


async def counts_by_state(session: AsyncSession) -> dict[str, int]:
    rows = (await session.exec(select(Job.state, func.count()).group_by(Job.state))).all()
    return dict(rows)


async def oldest_pending_age(session: AsyncSession) -> float:
    oldest = (await session.exec(
        select(func.min(Job.run_at)).where(col(Job.state) == JobState.PENDING,
                                           col(Job.run_at) <= utcnow()))).scalar()
    return 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())


async def dead_jobs(session: AsyncSession, limit: int = 100) -> list[Job]:
    """For the operator's dashboard: the newest dead letters of every account."""
    query = (select(Job).where(col(Job.state) == JobState.DEAD)
             .order_by(col(Job.finished_at).desc()).limit(limit))
    return list((await session.exec(query)).scalars())


async def depth_by_account(session: AsyncSession) -> dict[int, dict[str, int]]:
    rows = (await session.exec(
        select(Job.account_id, Job.state, func.count())
        .where(col(Job.state).in_([JobState.PENDING, JobState.RUNNING, JobState.DEAD]))
        .group_by(Job.account_id, Job.state))).all()
    depth: dict[int, dict[str, int]] = {}
    for account_id, state, count in rows:
        depth.setdefault(account_id, {})[state] = count
    return depth


async def purge(session: AsyncSession, *, jobs_before: datetime, inbox_before: datetime) -> tuple[int, int]:
    """Retention: finished jobs and old inbox rows go; pending, running and dead jobs stay (the
    dead ones until an operator retries them). Returns (jobs, inbox rows) deleted."""
    finished = await session.exec(
        delete(Job).where(col(Job.state) == JobState.DONE, col(Job.finished_at) < jobs_before)
        .execution_options(synchronize_session=False))
    inbox = await session.exec(
        delete(InboxEvent).where(col(InboxEvent.received_at) < inbox_before)
        .execution_options(synchronize_session=False))
    return finished.rowcount, inbox.rowcount

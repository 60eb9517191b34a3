import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from backend import jobs
from backend.jobs import JobSpec
from backend.models import Job, utcnow


def lead_job(account_id, lead_id, **payload):
    return JobSpec(account_id, "reconcile_lead", f"reconcile_lead:{account_id}:{lead_id}",
                   {"lead_id": lead_id, **payload})


async def enqueue(sessions, *specs):
    async with sessions() as session, session.begin():
        await jobs.enqueue(session, list(specs))


async def claim(sessions, worker="w1", limit=10):
    async with sessions() as session, session.begin():
        return await jobs.claim(session, worker_id=worker, limit=limit)


async def all_jobs(sessions):
    async with sessions() as session:
        return (await session.exec(select(Job).order_by(Job.id))).all()


async def test_pending_job_absorbs_new_events_for_the_same_key(sessions, make_accounts):
    await make_accounts(1)
    for n in range(50):
        await enqueue(sessions, lead_job(1, 7, seen=n))
    rows = await all_jobs(sessions)
    assert len(rows) == 1
    assert rows[0].payload == {"lead_id": 7, "seen": 49}


async def test_one_running_job_per_account(sessions, make_accounts):
    await make_accounts(1, 2)
    await enqueue(sessions, lead_job(1, 10), lead_job(1, 11), lead_job(2, 20))
    first = await claim(sessions)
    assert sorted((j.account_id, j.payload["lead_id"]) for j in first) == [(1, 10), (2, 20)]
    assert await claim(sessions, worker="w2") == []
    async with sessions() as session, session.begin():
        await jobs.finish(session, next(j.id for j in first if j.account_id == 1))
    assert [j.payload["lead_id"] for j in await claim(sessions, worker="w2")] == [11]


async def test_a_running_job_may_have_a_pending_twin(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 10))
    [running] = await claim(sessions)
    await enqueue(sessions, lead_job(1, 10, again=True))
    states = sorted(j.state for j in await all_jobs(sessions))
    assert states == ["pending", "running"]
    async with sessions() as session, session.begin():
        assert await jobs.fail(session, running, "boom") == "done"  # the twin redoes the work


async def test_accounts_take_turns(sessions, make_accounts):
    await make_accounts(1, 2)
    await enqueue(sessions, *(lead_job(1, n) for n in range(100)))
    await enqueue(sessions, lead_job(2, 999))
    order = []
    for _ in range(4):
        [job] = await claim(sessions, limit=1)
        order.append(job.account_id)
        async with sessions() as session, session.begin():
            await jobs.finish(session, job.id)
    assert order == [1, 2, 1, 1]


async def test_inactive_accounts_keep_their_jobs_unclaimed(sessions, make_accounts):
    await make_accounts(1, status="needs_reauth")
    await enqueue(sessions, lead_job(1, 10))
    assert await claim(sessions) == []
    assert [j.state for j in await all_jobs(sessions)] == ["pending"]


async def test_expired_lease_is_reclaimed_by_another_worker(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 10))
    [job] = await claim(sessions, worker="dead-worker")
    async with sessions() as session, session.begin():
        await session.exec(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    async with sessions() as session, session.begin():
        assert await jobs.release_expired_leases(session) == 1
    [again] = await claim(sessions, worker="w2")
    assert (again.id, again.attempts) == (job.id, 2)


async def test_expired_lease_with_a_pending_twin_ends_as_superseded(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 10))
    await claim(sessions, worker="dead-worker")
    await enqueue(sessions, lead_job(1, 10))
    async with sessions() as session, session.begin():
        await session.exec(update(Job).where(Job.state == "running")
                           .values(lease_until=utcnow() - timedelta(seconds=1)))
        assert await jobs.release_expired_leases(session) == 1
    assert sorted(j.state for j in await all_jobs(sessions)) == ["done", "pending"]


async def test_expired_twins_go_back_once(sessions, make_accounts):
    """Two dead workers each held a job for the same lead (a crash loop): one goes back, the
    older ends as superseded — both going back would break the pending key's uniqueness."""
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 10))
    await claim(sessions, worker="dead-worker")
    await enqueue(sessions, lead_job(1, 10))
    async with sessions() as session, session.begin():
        await session.exec(update(Job).values(state="batched", claimed_by="dead-worker-2",
                                              lease_until=utcnow() - timedelta(seconds=1))
                           .where(Job.state == "pending"))
        await session.exec(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
        assert await jobs.release_expired_leases(session) == 2
    assert [j.state for j in await all_jobs(sessions)] == ["done", "pending"]


class FixedJitter:
    def uniform(self, low, high):
        return 1.0


def test_backoff_schedule_from_2_seconds_to_an_hour():
    schedule = [jobs.backoff_seconds(n, rng=FixedJitter()) for n in range(1, 13)]
    assert schedule == [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600]
    assert jobs.backoff_seconds(1, retry_after=30, rng=FixedJitter()) == 30
    jittered = {jobs.backoff_seconds(3, rng=random.Random(seed)) for seed in range(20)}
    assert len(jittered) > 1 and all(6.4 <= d <= 9.6 for d in jittered)


async def test_failures_back_off_then_die_after_12_attempts(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 10))
    for attempt in range(1, 13):
        async with sessions() as session, session.begin():
            await session.exec(update(Job).values(run_at=utcnow()))
        [job] = await claim(sessions)
        assert job.attempts == attempt
        before = utcnow()
        async with sessions() as session, session.begin():
            state = await jobs.fail(session, job, f"failure {attempt}", retry_after=5)
        [row] = await all_jobs(sessions)
        if attempt < 12:
            assert state == "pending"
            assert row.run_at >= before + timedelta(seconds=max(5, 2 ** attempt * 0.8) - 0.01)
        else:
            assert (state, row.state, row.last_error) == ("dead", "dead", "failure 12")
    async with sessions() as session, session.begin():
        assert await jobs.retry_dead(session, 2, row.id) is False  # another account's id
        assert await jobs.retry_dead(session, 1, row.id) is True
    [row] = await all_jobs(sessions)
    assert (row.state, row.attempts) == ("pending", 0)


async def test_concurrent_claims_never_run_two_jobs_of_one_account(sessions, make_accounts):
    await make_accounts(*range(1, 6))
    await enqueue(sessions, *(lead_job(a, n) for a in range(1, 6) for n in range(4)))
    results = await asyncio.gather(*(claim(sessions, worker=f"w{n}", limit=3) for n in range(4)),
                                   return_exceptions=True)
    claimed = [job for result in results if isinstance(result, list) for job in result]
    claimed += await claim(sessions, worker="late", limit=5)
    accounts = [job.account_id for job in claimed]
    assert sorted(accounts) == [1, 2, 3, 4, 5]  # each account once, never twice


@pytest.mark.parametrize("attempts", [1])
async def test_release_does_not_count_the_attempt(sessions, make_accounts, attempts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 10))
    [job] = await claim(sessions)
    async with sessions() as session, session.begin():
        await jobs.release(session, job.id)
    [row] = await all_jobs(sessions)
    assert (row.state, row.attempts) == ("pending", attempts - 1)


async def test_queue_age_and_counts(sessions, make_accounts):
    await make_accounts(1)
    async with sessions() as session, session.begin():
        await jobs.enqueue(session, [lead_job(1, 1)], run_at=utcnow() - timedelta(seconds=90))
        await jobs.enqueue(session, [lead_job(1, 2)], run_at=utcnow() + timedelta(hours=1))
    async with sessions() as session:
        assert 89 <= await jobs.oldest_pending_age(session) < 120
        assert await jobs.counts_by_state(session) == {"pending": 2}
        assert await jobs.depth_by_account(session) == {1: {"pending": 2}}


async def test_purge_keeps_live_and_dead_jobs_and_recent_inbox_rows(sessions, make_accounts):
    from backend.models import InboxEvent

    await make_accounts(1)
    old = utcnow() - timedelta(days=40)
    async with sessions() as session, session.begin():
        session.add_all([
            Job(account_id=1, kind="k", coalesce_key="done-old", state="done", finished_at=old),
            Job(account_id=1, kind="k", coalesce_key="done-new", state="done", finished_at=utcnow()),
            Job(account_id=1, kind="k", coalesce_key="dead-old", state="dead", finished_at=old),
            Job(account_id=1, kind="k", coalesce_key="pending-old", state="pending", run_at=old),
            InboxEvent(source="kommo", account_id=1, dedupe_key="old", body="", received_at=old),
            InboxEvent(source="kommo", account_id=1, dedupe_key="new", body=""),
        ])
    async with sessions() as session, session.begin():
        assert await jobs.purge(session, jobs_before=utcnow() - jobs.KEEP_DONE_JOBS,
                                inbox_before=utcnow() - jobs.KEEP_INBOX) == (1, 1)
    assert sorted(j.coalesce_key for j in await all_jobs(sessions)) == [
        "dead-old", "done-new", "pending-old"]

"""A running job takes its account's other due jobs of its kind along; nothing that arrives
meanwhile is lost, and a dead worker's batch goes back to the queue."""

from datetime import timedelta

from sqlalchemy import update

from backend import job_batches, jobs
from backend.models import Job, utcnow
from tests.test_jobs import all_jobs, claim, enqueue, lead_job

LEASE = timedelta(seconds=60)


async def take(sessions, leader, limit=10):
    async with sessions() as session, session.begin():
        return await job_batches.take_followers(session, leader, worker_id="w1", limit=limit,
                                                lease=LEASE)


async def test_followers_are_the_account_s_due_jobs_of_the_kind(sessions, make_accounts):
    await make_accounts(1, 2)
    await enqueue(sessions, *(lead_job(1, n) for n in range(5)), lead_job(2, 9),
                  jobs.JobSpec(1, "reconcile_contact", "reconcile_contact:1:3", {"contact_id": 3}))
    [leader, _other_account] = await claim(sessions)
    followers = await take(sessions, leader, limit=3)
    assert [f.payload["lead_id"] for f in followers] == [1, 2, 3]
    states = {(j.account_id, j.kind, j.payload.get("lead_id")): (j.state, j.claimed_by)
              for j in await all_jobs(sessions)}
    assert states[(1, "reconcile_lead", 4)] == ("pending", None)
    assert states[(1, "reconcile_lead", 2)] == ("batched", "w1")
    assert states[(1, "reconcile_contact", None)] == ("pending", None)


async def test_an_event_during_the_batch_queues_a_new_job(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 1), lead_job(1, 2, seen=1))
    [leader] = await claim(sessions)
    [follower] = await take(sessions, leader)
    await enqueue(sessions, lead_job(1, 2, seen=2))  # lead 2 moved again while we read it
    rows = [(j.payload, j.state) for j in await all_jobs(sessions) if j.payload["lead_id"] == 2]
    assert sorted(rows, key=str) == [({"lead_id": 2, "seen": 1}, "batched"),
                                     ({"lead_id": 2, "seen": 2}, "pending")]
    async with sessions() as session, session.begin():
        await jobs.finish(session, follower.id)


async def test_a_dead_worker_s_batch_returns_to_the_queue(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 1), lead_job(1, 2), lead_job(1, 3))
    [leader] = await claim(sessions)
    await take(sessions, leader)
    await enqueue(sessions, lead_job(1, 3, again=True))  # lead 3's newer twin
    async with sessions() as session, session.begin():
        await session.exec(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
        assert await jobs.release_expired_leases(session) == 3
    rows = sorted((j.payload["lead_id"], j.state, j.payload.get("again", False))
                  for j in await all_jobs(sessions))
    assert rows == [(1, "pending", False), (2, "pending", False), (3, "done", False),
                    (3, "pending", True)]


async def test_a_shutdown_releases_batched_jobs_without_counting_the_attempt(sessions, make_accounts):
    await make_accounts(1)
    await enqueue(sessions, lead_job(1, 1), lead_job(1, 2))
    [leader] = await claim(sessions)
    [follower] = await take(sessions, leader)
    async with sessions() as session, session.begin():
        await jobs.release(session, follower.id)
    [row] = [j for j in await all_jobs(sessions) if j.id == follower.id]
    assert (row.state, row.attempts) == ("pending", 0)


async def test_a_rate_limited_account_s_due_jobs_wait_as_long(sessions, make_accounts):
    await make_accounts(1, 2)
    await enqueue(sessions, lead_job(1, 1), lead_job(1, 2), lead_job(2, 3))
    async with sessions() as session, session.begin():
        assert await job_batches.defer_due(session, 1, "reconcile_lead", 30) == 2
    later = {j.payload["lead_id"]: j.run_at for j in await all_jobs(sessions)}
    assert later[1] == later[2] > utcnow() + timedelta(seconds=25)
    assert later[3] <= utcnow()  # another account is not held up

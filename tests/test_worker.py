import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from backend import activity_log, jobs, repository
from backend.errors import (
    PermanentRefusal,
    UpstreamRateLimited,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from backend.jobs import JobSpec
from backend.models import EspConnection, Job, utcnow
from backend.worker import Worker
from tests.polling import eventually


@pytest.fixture
async def accounts(resources):
    async with resources.sessions() as session, session.begin():
        for account_id in (1, 2, 3):
            await repository.upsert_account(session, account_id, host="x.kommo.com", subdomain="x")


async def enqueue(resources, *specs):
    async with resources.sessions() as session, session.begin():
        await jobs.enqueue(session, list(specs))


async def job_rows(resources):
    async with resources.sessions() as session:
        return (await session.exec(select(Job).order_by(Job.id))).all()


def spec(account_id, n, kind="probe"):
    return JobSpec(account_id, kind, f"{kind}:{account_id}:{n}", {"n": n})


@pytest.fixture
async def run_worker(resources):
    tasks = []

    async def start(handlers, **kwargs):
        worker = Worker(resources, handlers=handlers, poll_interval=0.02, **kwargs)
        stop = asyncio.Event()
        tasks.append((stop, asyncio.create_task(worker.run(stop))))
        return stop, tasks[-1][1]

    yield start
    for stop, task in tasks:
        stop.set()
        await task


async def all_finished(resources):
    rows = await job_rows(resources)
    return rows if all(r.state in ("done", "dead") for r in rows) else None


async def test_outcomes_by_error_class(resources, accounts, run_worker):
    async def probe(_resources, job):
        outcome = job.payload["n"]
        if outcome == 1:
            raise PermanentRefusal("Member In Compliance State", service="mailchimp")
        if outcome == 2:
            raise UpstreamRateLimited("slow down", service="mailerlite", retry_after=30)
        if outcome == 3:
            raise ValueError("a bug")

    # The 429 holds its account's work (see test_circuit.py), so it has an account of its own.
    await enqueue(resources, spec(1, 0), spec(1, 1), spec(3, 2), spec(1, 3), spec(2, 4, kind="nope"))
    before = utcnow()
    await run_worker({"probe": probe}, concurrency=4)

    async def settled():
        rows = await job_rows(resources)
        return rows if all(r.state != "running" and (r.attempts >= 1 or r.run_at > before)
                           for r in rows) else None

    ok, refused, limited, crashed, unknown = await eventually(settled)
    assert (ok.state, ok.last_error) == ("done", None)
    assert (refused.state, refused.last_error) == (
        "done", "permanent_refusal: Member In Compliance State")
    # Waits as long as the vendor said, and the attempt does not count.
    assert (limited.state, limited.attempts) == ("pending", 0)
    assert limited.run_at >= before + timedelta(seconds=30)
    assert crashed.state == "pending" and crashed.last_error.startswith("ValueError: a bug (at ")
    assert unknown.state == "pending" and "no handler for job kind 'nope'" in unknown.last_error


async def test_never_two_jobs_of_one_account_at_once(resources, accounts, run_worker):
    log = []

    async def probe(_resources, job):
        log.append(("start", job.account_id, job.payload["n"]))
        await asyncio.sleep(0.01)
        log.append(("end", job.account_id, job.payload["n"]))

    await enqueue(resources, *(spec(a, n) for a in (1, 2, 3) for n in range(6)))
    await run_worker({"probe": probe}, concurrency=8)
    await eventually(lambda: all_finished(resources))
    assert len(log) == 36
    running = {}
    overlap_between_accounts = False
    for event, account_id, n in log:
        if event == "start":
            assert account_id not in running, f"account {account_id} ran two jobs at once"
            running[account_id] = n
            overlap_between_accounts |= len(running) > 1
        else:
            assert running.pop(account_id) == n
    assert overlap_between_accounts  # different accounts did run side by side


async def test_stop_releases_a_job_that_outlives_the_grace_period(resources, accounts, run_worker):
    started = asyncio.Event()

    async def slow(_resources, job):
        started.set()
        await asyncio.sleep(60)

    await enqueue(resources, spec(1, 0))
    stop, task = await run_worker({"probe": slow}, concurrency=1, grace_seconds=0.05)
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    [row] = await job_rows(resources)
    assert (row.state, row.attempts, row.lease_until) == ("pending", 0, None)


async def test_stop_lets_a_short_job_finish(resources, accounts, run_worker):
    started = asyncio.Event()

    async def short(_resources, job):
        started.set()
        await asyncio.sleep(0.05)

    await enqueue(resources, spec(1, 0))
    stop, task = await run_worker({"probe": short}, concurrency=1, grace_seconds=10)
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert [r.state for r in await job_rows(resources)] == ["done"]


# --- failures the admin sees in the activity log ---------------------------------------------


async def failed_activity(resources, account_id):
    async with resources.sessions() as session:
        rows = await activity_log.list_activity(session, account_id, limit=50)
    return [(a.direction, a.lead_id, a.summary, a.detail) for a in rows if a.outcome == "failed"]


async def run_last_attempt(resources, run_worker, job: JobSpec, error: Exception) -> Job:
    """Run `job` on its last attempt with a handler that raises `error`; the row once settled."""
    async def failing(_resources, _job):
        raise error

    await enqueue(resources, job)
    async with resources.sessions() as session, session.begin():
        await session.exec(update(Job).values(attempts=jobs.MAX_ATTEMPTS - 1))
    await run_worker({job.kind: failing}, concurrency=1)
    [row] = await eventually(lambda: all_finished(resources))
    return row


async def test_a_job_that_gives_up_tells_the_admin_once(resources, accounts, run_worker):
    row = await run_last_attempt(
        resources, run_worker, JobSpec(1, "reconcile_lead", "reconcile_lead:1:77", {"lead_id": 77}),
        UpstreamUnavailable("Kommo answered 503: Service Unavailable", service="kommo"))
    assert row.state == "dead"
    assert await failed_activity(resources, 1) == [(
        "to_esp", 77, f"gave up syncing lead 77 after {jobs.MAX_ATTEMPTS} attempts",
        "The last attempt failed: Kommo answered 503: Service Unavailable. Nothing else is "
        "affected. Once the cause is fixed, press “Sync now” on the card to try again.")]


async def test_a_crash_is_reported_without_its_traceback(resources, accounts, run_worker):
    opt_out = JobSpec(1, "esp_event", "esp_event:1:x", {"email": "a@b.io"})
    await run_last_attempt(resources, run_worker, opt_out, KeyError("secret internals"))
    [(direction, lead_id, summary, detail)] = await failed_activity(resources, 1)
    assert (direction, lead_id) == ("to_kommo", None)
    assert summary == f"gave up syncing an opt-out from the email platform after {jobs.MAX_ATTEMPTS} attempts"
    assert "mailsync hit an internal error (the operator's log has the details)" in detail
    assert "secret internals" not in detail


async def test_a_rejected_esp_key_is_flagged_and_told_once(resources, accounts, run_worker):
    async with resources.sessions() as session, session.begin():
        await repository.save_esp_connection(session, EspConnection(
            account_id=1, kind="mailchimp", api_key_enc=resources.vault.encrypt("k-us21"), hook_key="h1"))

    async def revoked(_resources, job):
        raise UpstreamUnauthorized("Mailchimp answered 401: API Key Invalid", service="mailchimp",
                                   status=401)

    await enqueue(resources, spec(1, 0, "reconcile_lead"), spec(1, 1, "reconcile_lead"))
    await run_worker({"reconcile_lead": revoked}, concurrency=2)
    await eventually(lambda: _all_tried(resources))
    assert await failed_activity(resources, 1) == [(
        "to_esp", None, "Mailchimp rejected mailsync's API key",
        "Mailchimp no longer accepts the stored API key (it was revoked or deleted). Syncing to "
        "Mailchimp waits until an administrator pastes a working key in the widget's settings "
        "(Mailchimp: Profile → Extras → API keys).")]
    async with resources.sessions() as session:
        connection = await repository.get_esp_connection(session, 1)
    assert connection.key_rejected_at is not None
    assert {r.state for r in await job_rows(resources)} == {"pending"}  # kept for the new key


async def _all_tried(resources):
    rows = await job_rows(resources)
    return all(r.attempts >= 1 and r.state == "pending" for r in rows) or None


async def test_a_leader_whose_followers_cannot_be_taken_runs_alone(resources, accounts, run_worker,
                                                                   monkeypatch):
    """PostgreSQL chose the follower claim as a deadlock's victim: the leader must still run (it
    once sat `running`, unbeaten, until its lease ran out)."""
    from sqlalchemy.exc import OperationalError

    from backend import job_batches

    async def deadlocked(*args, **kwargs):
        raise OperationalError("UPDATE job …", {}, Exception("deadlock detected"))

    monkeypatch.setattr(job_batches, "take_followers", deadlocked)
    await enqueue(resources, spec(1, 1), spec(1, 2))
    runs = []

    async def batch(resources, run):
        runs.append(sorted(job.payload["n"] for job in run))
        return {}

    async def single(resources, job):
        runs.append([job.payload["n"]])

    await run_worker({"probe": single}, batch_handlers={"probe": batch}, concurrency=2)
    rows = await eventually(lambda: all_finished(resources), message="the jobs did not finish")
    assert runs == [[1], [2]] and [r.state for r in rows] == ["done", "done"]

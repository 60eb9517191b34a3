"""Vendor holds (circuit.py, pauses.py): an outage, a 429, Kommo refusing the account and lost
authorization hold an account's work without charging attempts, across processes, and the work
resumes at once when the vendor answers again."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx2
import pytest
from sqlmodel import select

from backend import circuit, db, jobs, repository
from backend.app import create_app
from backend.circuit import OUTAGE, RATE, REFUSED
from backend.models import Job
from backend.resources import open_resources
from backend.sync.handlers import BATCH_HANDLERS, HANDLERS
from backend.sync.work import ReconcileLead
from backend.worker import Worker
from tests.conftest import make_settings
from tests.kommo.fixtures import seed_tokens
from tests.polling import eventually
from tests.routes.test_admin import basic, cell
from tests.sync.world import ACCOUNT, HOSTS, PROPOSAL, QUALIFIED, Faulty, open_world

# --- the rows ----------------------------------------------------------------------------------


async def test_three_failed_runs_in_a_row_open_the_circuit_with_growing_probes(sessions):
    async with sessions() as session, session.begin():
        previous = None
        seen = []
        for n in range(8):
            previous = await circuit.strike(session, 7, "mailerlite", 1000.0 + n, previous)
            seen.append((previous.engaged, round(previous.until - (1000.0 + n), 3)))
    assert seen == [(False, 0), (False, 0), (True, 2), (True, 4), (True, 8), (True, 16),
                    (True, 32), (True, 60)]


async def test_strikes_further_apart_than_the_window_start_over(sessions):
    async with sessions() as session, session.begin():
        first = await circuit.strike(session, 7, "kommo", 1000.0, None)
        second = await circuit.strike(session, 7, "kommo", 1000.0 + circuit.STRIKE_WINDOW + 1, first)
    assert (first.value, second.value) == (1, 1)


async def test_clearing_keeps_the_rate_pause_and_the_other_accounts(sessions):
    async with sessions() as session, session.begin():
        for account in (7, 8):
            await circuit.strike(session, account, "kommo", 1000.0, None)
            await circuit.pause(session, account, "kommo", RATE, until=2000.0, value=3)
            await circuit.pause(session, account, "kommo", REFUSED, until=2000.0, value=402)
        await circuit.pause(session, 7, "kommo", RATE, until=1500.0, value=1)  # an earlier end
        await circuit.clear(session, 7, "kommo", (OUTAGE, REFUSED))
    async with sessions() as session:
        assert await circuit.holds(session, 7) == [circuit.Hold("kommo", RATE, 2000.0, 1)]
        assert len(await circuit.holds(session, 8)) == 3
        assert set(await circuit.in_force(session, 1999.0)) == {7, 8}


# --- a small world with vendors that fail on demand ---------------------------------------------


@pytest.fixture
def quick(monkeypatch):
    """Budgets out of the way; backoffs and probes 8 times faster than in production."""
    monkeypatch.setattr("backend.kommo.budget.RATE", 10_000.0)
    monkeypatch.setattr("backend.kommo.budget.BURST", 10_000.0)
    monkeypatch.setattr("backend.providers.mailerlite.api.RATE_PER_SECOND", 10_000.0)
    monkeypatch.setattr("backend.providers.mailerlite.api.BURST", 10_000)
    monkeypatch.setattr(jobs, "BACKOFF_BASE", jobs.BACKOFF_BASE / 8)
    monkeypatch.setattr(circuit, "PROBE_FIRST", circuit.PROBE_FIRST / 8)
    monkeypatch.setattr(circuit, "PROBE_CAP", circuit.PROBE_CAP / 8)


@pytest.fixture
async def world(database_url, engine, quick):
    async for opened in open_world("mailerlite", database_url, engine):
        for vendor in ("kommo", "mailerlite"):
            host = HOSTS[vendor]
            opened.router.transports[host] = Faulty(opened.router.transports[host])
        await opened.map({QUALIFIED: "qualified", PROPOSAL: "proposal"})
        yield opened


def faulty(world, vendor: str) -> Faulty:
    return world.router.transports[HOSTS[vendor]]


async def leads(world, n: int) -> list[tuple[int, str]]:
    made = []
    for i in range(n):
        email = f"person{i}@shop.io"
        made.append((world.lead(PROPOSAL, [world.contact(f"Person {i}", emails=(email,))]), email))
    async with world.resources.sessions() as session, session.begin():
        await jobs.enqueue(session, [ReconcileLead(lead).to_spec(ACCOUNT) for lead, _ in made])
    return made


async def working(world, *resources):
    """Workers (one per set of resources, as processes would) until the block ends."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(Worker(r, concurrency=4, poll_interval=0.01, handlers=HANDLERS,
                                        batch_handlers=BATCH_HANDLERS).run(stop))
             for r in resources or (world.resources,)]
    return stop, tasks


async def stop_all(stop, tasks):
    stop.set()
    await asyncio.gather(*tasks)


async def job_rows(world):
    async with world.resources.sessions() as session:
        return (await session.exec(select(Job).order_by(Job.id))).all()


def synced(world, made, segment="proposal"):
    return all(world.subscriber(email)[1] == {segment} for _, email in made)


async def failures(world):
    return [a.summary for a in await world.activity() if a.outcome == "failed"]


def unavailable(_request):
    return httpx2.Response(503, json={"message": "Service Unavailable"})


# --- (a) an outage -----------------------------------------------------------------------------


async def test_an_outage_holds_the_work_uncharged_and_everything_runs_once_it_answers(world):
    made = await leads(world, 100)
    mailerlite = faulty(world, "mailerlite")
    mailerlite.fault = unavailable
    stop, tasks = await working(world)
    try:
        await eventually(lambda: _circuit_open(world), message="the circuit did not open")
        opened = time.monotonic()
        await asyncio.sleep(1.0)  # the outage goes on: only probes reach MailerLite meanwhile
        probes = sum(1 for at, status in mailerlite.arrivals if at > opened and status == 503)
        mailerlite.fault = lambda request: None
        recovered = time.monotonic()
        await eventually(lambda: synced(world, made), within=20, message="not all synced")
        after = [status for at, status in mailerlite.arrivals if at >= recovered]
    finally:
        await stop_all(stop, tasks)
    rows = await job_rows(world)
    assert {r.state for r in rows} == {"done"}
    assert max(r.attempts for r in rows) <= circuit.THRESHOLD  # 2 charged strikes, then the success
    # Probes 0.25 s, 0.5 s, 1 s apart (scaled down 8×): at most 3 runs in that second.
    assert probes <= 3, probes
    # Everything that waited went out together once a probe got through: a few bulk calls for
    # 100 contacts, not one call per job on its own backoff clock (how soon: bench/outage.py).
    assert 503 not in after and len(after) <= 10, after
    assert await failures(world) == ["MailerLite is not answering; syncing waits"]
    async with world.resources.sessions() as session:
        assert await circuit.holds(session, ACCOUNT) == []  # closed again


async def _circuit_open(world):
    async with world.resources.sessions() as session:
        return any(h.engaged for h in await circuit.holds(session, ACCOUNT))


# --- (b) a 429 ---------------------------------------------------------------------------------


async def test_a_429_pauses_the_account_s_calls_for_as_long_as_kommo_said(world, monkeypatch):
    """Kommo answers 429 with retry_after=3 for 5 s: one call starts the pause, one probe after
    3 s meets the second 429, and the next call comes after the window."""
    made = await leads(world, 20)
    kommo = faulty(world, "kommo")
    window_end = time.monotonic() + 5.0
    kommo.fault = lambda request: httpx2.Response(429, json={
        "title": "Too Many Requests", "status": 429, "retry_after": 3,
        "detail": "You have sent too many requests"}) if time.monotonic() < window_end else None
    stop, tasks = await working(world)
    try:
        await eventually(lambda: synced(world, made), within=20, message="not all synced")
    finally:
        await stop_all(stop, tasks)
    inside = [at for at, _status in kommo.arrivals if at < window_end]
    assert len(inside) == 2, inside
    assert inside[1] - inside[0] >= 3.0
    assert [r.attempts for r in await job_rows(world)] == [1] * 20  # the pauses charged nothing
    [entry] = await failures(world)
    assert entry.startswith("Kommo asked us to slow down; paused until ") and entry.endswith(" UTC")


# --- (c) another process -------------------------------------------------------------------------


async def test_a_hold_written_by_one_process_stops_another(pg_schema_url, quick):
    """Two sets of resources on two engines, as two worker processes have."""
    from backend import migrations

    engines = [db.create_engine(pg_schema_url) for _ in range(2)]
    await migrations.upgrade(engines[0])
    ran = []

    async def probe(_resources, job):
        ran.append(job.id)

    settings = make_settings(pg_schema_url)
    try:
        async with open_resources(settings, engine=engines[0]) as one, \
                open_resources(settings, engine=engines[1]) as other:
            async with one.sessions() as session, session.begin():
                await repository.upsert_account(session, 5, host="a5.kommo.com", subdomain="a5")
                await circuit.pause(session, 5, "kommo", RATE, until=time.time() + 30, value=30)
                await jobs.enqueue(session, [jobs.JobSpec(5, "probe", "probe:5:1", {})])
            await one.limiter.pause("kommo:5", 30)
            with pytest.raises(Exception) as refused:
                await other.limiter.acquire("kommo:5", rate=5, burst=1, service="kommo")
            assert (refused.value.code, refused.value.service) == ("vendor_paused", "kommo")
            assert 29 < refused.value.retry_after <= 30.5
            stop = asyncio.Event()
            task = asyncio.create_task(Worker(other, concurrency=1, poll_interval=0.01,
                                              handlers={"probe": probe}).run(stop))
            try:
                async def put_back():
                    async with other.sessions() as session:
                        [row] = (await session.exec(select(Job))).all()
                    return row if row.run_at.timestamp() > time.time() + 25 else None

                row = await eventually(put_back, message="the held job was not put back")
            finally:
                stop.set()
                await task
    finally:
        for engine in engines:
            await engine.dispose()
    assert ran == []
    assert (row.state, row.attempts) == ("pending", 0)


# --- Kommo refusing the account, and its tokens ------------------------------------------------


async def test_kommo_402_holds_the_work_and_tells_the_admin_once(world, monkeypatch):
    monkeypatch.setattr(circuit, "REFUSED_PROBE", 1.0)
    made = await leads(world, 5)
    kommo = faulty(world, "kommo")
    kommo.fault = lambda request: httpx2.Response(402, json={"title": "Payment Required",
                                                             "status": 402, "detail": ""})
    stop, tasks = await working(world)
    try:
        await eventually(lambda: len([s for at, s in kommo.arrivals if s == 402]) >= 2,
                         message="Kommo was not asked again after the hold")
        await eventually(lambda: _all_waiting(world), message="not kept")  # kept, not burned
        kommo.fault = lambda request: None
        await eventually(lambda: synced(world, made), message="not all synced")
    finally:
        await stop_all(stop, tasks)
    assert await failures(world) == [
        "Kommo refuses mailsync's requests: the account's paid or trial period has ended "
        "(payment required)"]


async def test_an_access_token_that_expires_mid_run_is_refreshed_and_the_run_goes_on(world):
    made = await leads(world, 5)
    world.kommo.store.expire_access_tokens(ACCOUNT)
    await world.drain()
    assert synced(world, made)
    refreshes = [r for r in world.kommo_requests() if r.url.path == "/oauth2/access_token"]
    assert len(refreshes) == 1
    assert [r.attempts for r in await job_rows(world)] == [1] * 5


async def test_a_revoked_authorization_keeps_the_jobs_until_the_reinstall(world):
    made = await leads(world, 5)
    world.kommo.store.revoke(ACCOUNT)
    stop, tasks = await working(world)
    try:
        async def needs_reauth():
            async with world.resources.sessions() as session:
                account = await repository.get_account(session, ACCOUNT)
            return account.status == "needs_reauth"

        await eventually(needs_reauth, message="the account was not marked")
        await eventually(lambda: _all_waiting(world), message="the jobs were not put back")
        world.kommo.store.account(ACCOUNT).revoked = False
        await seed_tokens(world.resources, world.kommo, ACCOUNT)  # the admin installs again
        await eventually(lambda: synced(world, made), message="not all synced after the reinstall")
    finally:
        await stop_all(stop, tasks)
    assert [r.attempts for r in await job_rows(world)] == [1] * 5
    assert await failures(world) == ["Kommo no longer accepts mailsync's authorization"]


async def _all_waiting(world):
    rows = await job_rows(world)
    return all(r.state == "pending" and r.attempts == 0 for r in rows) and rows


# --- what the operator sees ----------------------------------------------------------------------


@pytest.fixture
async def operator(database_url, engine):
    app = create_app(make_settings(database_url, ADMIN_PASSWORD="operator-pass-123"), engine=engine)
    async with app.router.lifespan_context(app):
        async with app.state.resources.sessions() as session, session.begin():
            await repository.upsert_account(session, 5, host="acme.kommo.com", subdomain="acme")
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://t") as client:
            yield client, app.state.resources


async def test_the_dashboard_shows_until_when_a_vendor_holds_the_account(operator):
    client, resources = operator
    until = time.time() + 120
    async with resources.sessions() as session, session.begin():
        await circuit.pause(session, 5, "kommo", RATE, until=until, value=120)
        await circuit.pause(session, 5, "mailerlite", RATE, until=time.time() - 1, value=3)  # over
    page = await client.get("/admin", headers=basic("operator-pass-123"))
    clock = datetime.fromtimestamp(until, UTC).strftime("%H:%M:%S")
    assert cell(page.text, "paused") == (
        f'<span class="bad" data-vendor="kommo">kommo until {clock} UTC</span>\n'
        '        <span class="muted">(asked us to slow down)</span><br>')

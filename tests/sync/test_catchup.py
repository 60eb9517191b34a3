"""Catch-up from Kommo's event log, end to end on both providers: the simulated Kommo delivers its
webhooks to our real route and drops the ones told to; the sweep reads its event log and the
worker reconciles what the dropped webhooks would have."""

import asyncio
from datetime import timedelta

import httpx2
import pytest
from sqlmodel import delete, select

from backend import kommo_catchups, repository
from backend.errors import UpstreamUnavailable
from backend.jobs import ClaimedJob
from backend.kommo import install
from backend.models import Job, JobState, KommoCatchup, utcnow
from backend.sandbox import kommo_render
from backend.sandbox.kommo_store import KommoProblem
from backend.sync import catchup
from backend.sync.handlers import BATCH_HANDLERS, HANDLERS
from backend.worker import Worker
from tests.polling import eventually
from tests.sync.world import ACCOUNT, INCOMING, LOST, PROPOSAL, QUALIFIED

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", LOST: "remove"}


@pytest.fixture
async def hooked(world):
    """Our webhook subscribed in the simulated Kommo, its deliveries reaching our app."""
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=world.app)) as client:
        world.kommo.webhook_client = client
        account = await account_row(world)
        assert await install.ensure_webhook(world.resources, ACCOUNT, account.host, account.hook_key)
        await world.map(MAPPING)
        world.kommo.requests.clear()
        yield world


async def account_row(world):
    async with world.resources.sessions() as session:
        return await repository.get_account(session, ACCOUNT)


async def cursor(world):
    async with world.resources.sessions() as session:
        return await kommo_catchups.get_kommo_catchup(session, ACCOUNT)


def sweep(world, **kwargs):
    return catchup.catch_up(world.resources, ACCOUNT, **kwargs)


def calls(world):
    return [f"{r.method} {r.path}" for r in world.kommo.requests if r.path.startswith("/api/")]


async def synced(world, email, stage=INCOMING):
    """A contact with `email` on a lead moved (webhook delivered) into QUALIFIED, reconciled."""
    lead = world.lead(stage, [world.contact(emails=[email])])
    [delivery] = await world.kommo.change_stage(ACCOUNT, lead, QUALIFIED)
    assert delivery.status == 200
    return lead


async def test_a_dropped_stage_change_is_recovered(hooked):
    world = hooked
    lead = await synced(world, "jane@shop.io")
    await world.drain()
    assert world.subscriber("jane@shop.io")[1] == {"qualified"}
    world.kommo.delivery.drop_next(1)
    [lost] = await world.kommo.change_stage(ACCOUNT, lead, PROPOSAL)
    await world.drain()
    assert lost.dropped and world.subscriber("jane@shop.io")[1] == {"qualified"}  # lost for now
    result = await sweep(world)
    assert (result.leads, result.contacts, result.webhook) == ((lead,), (), "present")
    await world.drain()
    assert world.subscriber("jane@shop.io")[1] == {"proposal"}


async def test_20_dropped_of_100_changes_all_converge(hooked):
    world = hooked
    emails = [f"buyer{n}@shop.io" for n in range(100)]
    leads = [await synced(world, email) for email in emails]
    await world.drain(within=60)
    dropped = []
    for n, lead in enumerate(leads):
        if n % 5 == 0:
            world.kommo.delivery.drop_next(1)
            dropped.append(lead)
        await world.kommo.change_stage(ACCOUNT, lead, PROPOSAL)
    await world.drain(within=60)
    stale = [lead for lead, email in zip(leads, emails, strict=True)
             if world.subscriber(email)[1] != {"proposal"}]
    assert (len(dropped), stale) == (20, dropped)
    world.kommo.requests.clear()
    result = await sweep(world)
    # Exactly the 20 lost changes are reconciled; the 80 delivered ones are known applied (and
    # the 100 new contacts change nothing by themselves).
    assert (sorted(result.leads), result.skipped) == (sorted(dropped), 180)
    assert result.events == 400  # 100 contacts and 100 leads added, 200 stage moves
    assert calls(world) == ["GET /api/v4/webhooks", "GET /api/v4/contacts/custom_fields",
                            *["GET /api/v4/events"] * 4]
    await world.drain(within=60)
    assert all(world.subscriber(email)[1] == {"proposal"} for email in emails)


async def test_an_idle_catch_up_costs_two_kommo_calls(hooked):
    world = hooked
    await synced(world, "jane@shop.io")
    await world.drain()
    first = await sweep(world)
    # The contact and the lead added, the lead moved: all applied already (lead and contact skipped).
    assert (first.events, first.leads, first.contacts, first.skipped) == (3, (), (), 2)
    world.kommo.requests.clear()
    second = await sweep(world)
    assert (second.events, second.leads, second.contacts) == (0, (), ())
    # One page: the last minute of the previous window, re-read but already seen.
    assert calls(world) == ["GET /api/v4/webhooks", "GET /api/v4/events"]


async def test_the_first_sweep_looks_back_one_interval_and_the_next_resume(hooked):
    world = hooked
    lead = await synced(world, "jane@shop.io")
    await world.drain()
    async with world.resources.sessions() as session, session.begin():
        await session.exec(delete(KommoCatchup))  # an account no worker has scheduled yet
    now = utcnow()
    await sweep(world, now=now)
    first = world.kommo.calls("/api/v4/events")[-1].query
    start = int(now.timestamp()) - 300
    assert f"filter%5Bcreated_at%5D%5Bfrom%5D={start - 60}" in first
    assert f"filter%5Bcreated_at%5D%5Bto%5D={int(now.timestamp())}" in first
    row = await cursor(world)
    assert (row.cursor_at, row.window_to, row.next_page) == (
        now.replace(microsecond=0), None, 1)
    assert len(row.seen) == 3  # the window's last minute: every event so far
    # The next window re-reads the last minute (clock skew, late logging) but acts on nothing twice.
    again = await sweep(world, now=now + timedelta(seconds=1))
    assert (again.events, again.leads) == (0, ())
    assert f"filter%5Bcreated_at%5D%5Bfrom%5D={int(now.timestamp()) - 60}" in \
        world.kommo.calls("/api/v4/events")[-1].query
    world.kommo.delivery.drop_next(1)
    await world.kommo.change_stage(ACCOUNT, lead, PROPOSAL)
    third = await sweep(world)
    assert (third.events, third.leads) == (1, (lead,))
    assert (await cursor(world)).enqueued_total == 1


async def test_a_long_window_is_read_over_several_jobs(hooked, monkeypatch):
    monkeypatch.setattr(catchup, "PAGES_PER_RUN", 2)
    world = hooked
    world.kommo.delivery.drop_all = True
    leads = [world.lead(QUALIFIED, [world.contact(emails=[f"b{n}@shop.io"])]) for n in range(150)]
    now = utcnow()
    first = await sweep(world, now=now)  # 300 events: pages 1 and 2 now, page 3 next time
    row = await cursor(world)
    assert (first.more, len(first.leads), row.next_page) == (True, 100, 3)
    assert row.window_to == now.replace(microsecond=0)
    assert (first.webhook, (await sweep(world, now=now + timedelta(seconds=5))).webhook) == ("present", None)
    row = await cursor(world)
    assert (row.next_page, row.window_to, row.cursor_at) == (1, None, now.replace(microsecond=0))
    async with world.resources.sessions() as session:
        queued = (await session.exec(select(Job.payload).where(Job.kind == "reconcile_lead"))).all()
    assert sorted(p["lead_id"] for p in queued) == sorted(leads)  # each once
    assert [r.query.count("page=") for r in world.kommo.calls("/api/v4/events")] == [1, 1, 1]


async def test_a_missing_or_disabled_webhook_is_subscribed_again(hooked):
    world = hooked
    hooks = world.kommo.store.account(ACCOUNT).webhooks
    [destination] = hooks
    hooks[destination]["disabled"] = True  # Kommo switched it off after too many bad answers
    assert (await sweep(world)).webhook == "resubscribed"
    assert hooks[destination]["disabled"] is False
    hooks.clear()
    world.kommo.requests.clear()
    assert (await sweep(world)).webhook == "resubscribed"
    assert calls(world) == ["GET /api/v4/webhooks", "GET /api/v4/webhooks", "POST /api/v4/webhooks",
                            "GET /api/v4/events"]
    assert list(hooks) == [destination]
    entries = [a for a in await world.activity() if a.direction == "to_kommo"]
    assert [(a.outcome, a.summary) for a in entries] == [(
        "ok", "Kommo had stopped sending changes to mailsync (its webhook was removed or switched "
              "off); mailsync subscribed it again")] * 2
    lead = world.lead(INCOMING, [world.contact()])
    assert [d.status for d in await world.kommo.change_stage(ACCOUNT, lead, QUALIFIED)] == [200]


async def test_a_webhook_kommo_refuses_is_reported_once_and_asked_for_hourly(hooked, monkeypatch):
    world = hooked
    world.kommo.store.account(ACCOUNT).webhooks.clear()

    def refuse(*args):
        raise KommoProblem(403, "API webhooks need the Advanced plan")

    monkeypatch.setattr(kommo_render, "add_webhook", refuse)
    now = utcnow()
    assert (await sweep(world, now=now)).webhook == "missing"
    world.kommo.requests.clear()
    assert (await sweep(world, now=now + timedelta(minutes=5))).webhook == "missing"
    assert calls(world) == ["GET /api/v4/webhooks", "GET /api/v4/events"]  # not asked again yet
    assert (await sweep(world, now=now + timedelta(minutes=61))).webhook == "missing"
    assert calls(world)[-2] == "POST /api/v4/webhooks"
    entries = [a for a in await world.activity() if a.direction == "to_kommo"]
    assert [(a.outcome, a.summary) for a in entries] == [(
        "failed", "Kommo is not sending changes to mailsync: its webhook is missing and Kommo "
                  "refused to subscribe it again")]
    assert "every 5 minutes" in entries[0].detail
    assert (await account_row(world)).kommo_webhook_registered is False


async def test_a_refused_webhook_check_does_not_stop_the_sweep(hooked, monkeypatch):
    world = hooked
    lead = await synced(world, "jane@shop.io")
    await world.drain()

    def refuse(*args):
        raise KommoProblem(402, "Payment required")

    monkeypatch.setattr(kommo_render, "webhooks_list", refuse)
    world.kommo.delivery.drop_next(1)
    await world.kommo.change_stage(ACCOUNT, lead, PROPOSAL)
    result = await sweep(world)
    assert (result.webhook, result.leads) == ("unchecked", (lead,))


async def test_email_changes_links_and_deletions_whose_webhooks_were_lost(hooked):
    world = hooked
    lead = await synced(world, "old@shop.io")
    other = await synced(world, "gone@shop.io")
    await world.drain()
    world.kommo.delivery.drop_all = True
    contact = world.kommo.store.lead(ACCOUNT, lead).contacts[0][0]
    await world.kommo.change_emails(ACCOUNT, contact, ["new@shop.io"])
    newcomer = world.contact(emails=["newcomer@shop.io"])
    await world.kommo.link_contact(ACCOUNT, lead, contact, linked=False)
    await world.kommo.link_contact(ACCOUNT, lead, newcomer)
    await world.kommo.delete_lead(ACCOUNT, other)
    result = await sweep(world)
    assert (sorted(result.leads), sorted(result.contacts)) == (sorted([lead, other]),
                                                               sorted([contact, newcomer]))
    await world.drain()
    assert world.subscriber("newcomer@shop.io")[1] == {"qualified"}  # the lead's new main contact
    assert world.subscriber("gone@shop.io")[1] == set()  # its lead was deleted
    assert world.subscriber("old@shop.io")[1] == set()  # the address left with its change


async def test_nothing_is_read_without_an_email_platform(hooked):
    world = hooked
    async with world.resources.sessions() as session, session.begin():
        await repository.delete_esp_connection(session, ACCOUNT)
    now = utcnow()
    assert await sweep(world, now=now) == catchup.Sweep()
    assert calls(world) == []
    assert (await cursor(world)).cursor_at == now.replace(microsecond=0)


def job(account_id=ACCOUNT):
    return ClaimedJob(id=1, account_id=account_id, kind=catchup.KIND, payload={}, attempts=1)


async def queued(world):
    async with world.resources.sessions() as session:
        return (await session.exec(select(Job).where(Job.kind == catchup.KIND,
                                                     Job.state == JobState.PENDING))).all()


async def test_due_sweeps_are_enqueued_once_whoever_asks(hooked):
    world = hooked
    async with world.resources.sessions() as session, session.begin():
        for account_id, status in ((41, "active"), (42, "needs_reauth")):
            account = await repository.upsert_account(session, account_id, host=f"a{account_id}.kommo.com",
                                                      subdomain=f"a{account_id}")
            account.status = status
    now = utcnow().replace(microsecond=0)
    assert await catchup.run_due_catchups(world.resources, now) == 0  # first sweeps: one interval on
    async with world.resources.sessions() as session:
        rows = {a: await kommo_catchups.get_kommo_catchup(session, a) for a in (41, 42, ACCOUNT)}
    assert rows[42] is None  # not active
    assert [(rows[a].cursor_at, rows[a].next_at) for a in (41, ACCOUNT)] == [
        (now, now + timedelta(seconds=300 + (41 * 7919) % 300)),
        (now, now + timedelta(seconds=300 + (ACCOUNT * 7919) % 300))]
    later = now + timedelta(seconds=600)
    # Two worker processes at once: each due account is taken by one of them.
    taken = [await catchup.run_due_catchups(world.resources, later) for _ in range(2)]
    assert taken == [2, 0]
    assert sorted(j.account_id for j in await queued(world)) == [41, ACCOUNT]
    async with world.resources.sessions() as session:
        assert (await kommo_catchups.get_kommo_catchup(session, 41)).next_at == later + timedelta(seconds=300)
    assert await catchup.run_due_catchups(world.resources, later + timedelta(seconds=300)) == 2
    assert len(await queued(world)) == 2  # the pending ones absorbed the new ones


async def test_kommo_failing_waits_for_the_next_sweep_and_more_pages_come_at_once(hooked, monkeypatch):
    world = hooked

    async def down(*args, **kwargs):
        raise UpstreamUnavailable("Kommo is down", service="kommo")

    monkeypatch.setattr(catchup, "catch_up", down)
    await catchup.handle(world.resources, job())  # not raised: no retry, no dead letter
    assert await queued(world) == []

    async def long_window(*args, **kwargs):
        return catchup.Sweep(more=True)

    monkeypatch.setattr(catchup, "catch_up", long_window)
    await catchup.handle(world.resources, job())
    [follow_up] = await queued(world)
    assert (follow_up.account_id, follow_up.run_at <= utcnow()) == (ACCOUNT, True)

    async def crash(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(catchup, "catch_up", crash)
    with pytest.raises(KeyError):  # ours to fix: the worker retries and dead-letters it
        await catchup.handle(world.resources, job())


async def test_a_paused_account_looks_back_one_day_at_most(hooked):
    world = hooked
    now = utcnow().replace(microsecond=0)
    await sweep(world, now=now - timedelta(days=3))
    await sweep(world, now=now)
    query = world.kommo.calls("/api/v4/events")[-1].query
    assert f"filter%5Bcreated_at%5D%5Bfrom%5D={int(now.timestamp()) - 86400 - 60}" in query


async def test_a_due_sweep_run_by_the_worker_recovers_a_lost_change(hooked):
    world = hooked
    lead = await synced(world, "jane@shop.io")
    await world.drain()
    world.kommo.delivery.drop_next(1)
    await world.kommo.change_stage(ACCOUNT, lead, PROPOSAL)
    now = utcnow()
    await catchup.run_due_catchups(world.resources, now)  # schedules the account
    assert await catchup.run_due_catchups(world.resources, now + timedelta(seconds=600)) == 1
    stop = asyncio.Event()
    worker = Worker(world.resources, concurrency=2, poll_interval=0.01,
                    handlers={**HANDLERS, catchup.KIND: catchup.handle}, batch_handlers=BATCH_HANDLERS)
    task = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: world.subscriber("jane@shop.io")[1] == {"proposal"},
                         message="the lost change was not recovered")
    finally:
        stop.set()
        await task
    assert (await cursor(world)).enqueued_total == 1

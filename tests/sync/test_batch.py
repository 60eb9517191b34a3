"""Many leads of one account in one run, on both providers against their simulators."""

import json
from collections import Counter

import pytest
from sqlmodel import select

from backend import jobs
from backend.models import Job
from backend.sync import batch
from backend.sync.work import ReconcileLead
from tests.sync.world import ACCOUNT, HOSTS, PROPOSAL, QUALIFIED, WON

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won"}
N = 120


def calls(world, host):
    return sum(1 for r in world.router.requests if r.url.host == HOSTS[host])


def seed(world, n, stage=QUALIFIED):
    return [world.lead(stage, [world.contact(f"C {i}", emails=[f"c{i}@shop.io"])]) for i in range(n)]


async def test_a_bulk_move_costs_a_handful_of_calls(world):
    await world.map(MAPPING)
    leads = seed(world, N)
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    active = "active" if world.kind == "mailerlite" else "subscribed"
    assert all(world.subscriber(f"c{i}@shop.io") == (active, {"qualified"}) for i in range(N))
    # Kommo: the leads in one read, their contacts in one more; the ESP: bulk writes (+ fields).
    assert calls(world, "kommo") == 2
    esp_writes = Counter(f"{r.method} {r.url.path}" for r in world.esp_requests()
                         if "fields" not in r.url.path)
    assert esp_writes == ({"POST /api/batch": 3} if world.kind == "mailerlite"
                          else {f"POST /us21/3.0/lists/{world.list_id}": 1})
    world.router.requests.clear()
    for lead in leads:
        world.move(lead, PROPOSAL)
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    assert all(world.subscriber(f"c{i}@shop.io")[1] == {"proposal"} for i in range(N))
    assert calls(world, "kommo") == 1  # synced contacts are trusted as stored: no contact read
    # Mailchimp: the tag ids read once, the new tag made, one segment call per tag.
    assert calls(world, world.kind) == (7 if world.kind == "mailerlite" else 4)
    summaries = Counter(a.summary for a in await world.activity())
    noun, name = ("group", str.title) if world.kind == "mailerlite" else ("tag", str)
    assert summaries[f"moved to {noun} “{name('proposal')}” (stage Proposal)"] == N


async def test_opt_outs_stay_final_in_bulk(world):
    await world.map(MAPPING)
    world.seed_subscriber("c0@shop.io", "unsubscribed")
    leads = seed(world, batch.FEW + 2)  # more than the single-lead path takes
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    assert world.subscriber("c0@shop.io") == ("unsubscribed", {"qualified"})
    bodies = json.dumps(world.esp_bodies())
    assert '"status": "subscribed"' not in bodies and '"status": "active"' not in bodies
    assert (await world.state(world.kommo.store.lead(ACCOUNT, leads[0]).contacts[0][0])).esp_status \
        == "unsubscribed"


async def test_the_most_recently_updated_lead_decides_within_a_batch(world):
    await world.map(MAPPING)
    contact = world.contact()
    first = world.lead(QUALIFIED, [contact])
    second = world.lead(WON, [contact])
    world.kommo.store.lead(ACCOUNT, second).updated_at += 10
    assert await batch.reconcile_leads(world.resources, ACCOUNT, [first, second]) == {}
    assert world.subscriber("jane@shop.io")[1] == {"won"}


async def test_the_worker_takes_an_account_s_due_lead_jobs_as_one_batch(world):
    await world.map(MAPPING)
    leads = seed(world, 40)
    async with world.resources.sessions() as session, session.begin():
        await jobs.enqueue(session, [ReconcileLead(lead_id=lead).to_spec(ACCOUNT) for lead in leads])
    await world.drain()
    assert all(world.subscriber(f"c{i}@shop.io")[1] == {"qualified"} for i in range(40))
    reads = [r for r in world.kommo_requests() if r.url.path == "/api/v4/leads"]
    assert len(reads) == 1 and str(reads[0].url.params).count("filter%5Bid%5D") == 40
    async with world.resources.sessions() as session:
        rows = (await session.exec(select(Job))).all()
    assert {(r.state, r.attempts) for r in rows} == {("done", 1)}


async def test_one_refused_address_never_fails_the_batch(world):
    if world.kind != "mailchimp":
        pytest.skip("the fake-address refusal is Mailchimp's")
    await world.map(MAPPING)
    fake = world.contact("Fake", emails=["someone@example.com"])  # "looks fake" at Mailchimp
    leads = [world.lead(QUALIFIED, [fake]), *seed(world, batch.FEW + 1)]
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    assert all(world.subscriber(f"c{i}@shop.io")[1] == {"qualified"} for i in range(batch.FEW + 1))
    state = await world.state(fake)
    assert "looks fake" in state.last_error
    failed = [a for a in await world.activity() if a.outcome == "failed"]
    assert [(a.contact_id, a.summary) for a in failed] == [(fake, "Mailchimp refused the address")]
    sent = len(world.esp_requests())
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads[:1]) == {}
    assert len(world.esp_requests()) == sent  # not retried until the contact changes in Kommo


async def test_a_rate_limit_mid_batch_retries_only_what_was_not_written(world):
    if world.kind != "mailerlite":
        pytest.skip("MailerLite's import limit (5 /batch upserts a minute) is the one hit mid-batch")
    world.esp.state.import_limit = 2
    await world.map(MAPPING)
    leads = seed(world, N)  # three /batch upserts of 50, 50 and 20
    failures = await batch.reconcile_leads(world.resources, ACCOUNT, leads)
    assert sorted(failures) == sorted(leads[100:])
    assert {type(e).__name__ for e in failures.values()} == {"UpstreamRateLimited"}
    assert all(0 < e.retry_after <= 60 for e in failures.values())
    assert all(world.subscriber(f"c{i}@shop.io")[1] == {"qualified"} for i in range(100))
    assert world.subscriber("c100@shop.io") == (None, set())


@pytest.mark.parametrize("few", [False, True], ids=["batch", "single"])
async def test_a_write_cut_short_is_not_trusted_afterwards(world, monkeypatch, few):
    """A worker killed after the platform took its writes but before their results were stored:
    the next run must not trust the stored segments (found by bench/busy.py with kill -9)."""
    await world.map(MAPPING)
    n = 2 if few else batch.FEW + 2
    leads = seed(world, n)
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    for lead in leads:
        world.move(lead, PROPOSAL)

    async def killed(*args, **kwargs):
        raise SystemExit("kill -9 before the results are stored")

    monkeypatch.setattr(type(await _ctx(world)), "commit", killed)
    with pytest.raises(SystemExit):
        await batch.reconcile_leads(world.resources, ACCOUNT, leads)
    monkeypatch.undo()
    assert world.subscriber("c0@shop.io")[1] == {"proposal"}  # written, never stored
    for lead in leads:
        world.move(lead, WON)
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    assert [world.subscriber(f"c{i}@shop.io")[1] for i in range(n)] == [{"won"}] * n
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}  # and it stays trusted
    world.router.requests.clear()
    for lead in leads:
        world.move(lead, QUALIFIED)
    assert await batch.reconcile_leads(world.resources, ACCOUNT, leads) == {}
    assert [world.subscriber(f"c{i}@shop.io")[1] for i in range(n)] == [{"qualified"}] * n


async def _ctx(world):
    from backend.sync.account import AccountSync

    return await AccountSync.load(world.resources, ACCOUNT)

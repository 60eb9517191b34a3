"""The initial sync of existing leads: a preview that writes nothing, the admin's choice for new
subscribers, pages that resume where they stopped; on both providers against their simulators."""

import json

import httpx2
import pytest

from backend import jobs
from backend.errors import UpstreamRateLimited
from backend.models import Job
from backend.sync import backfill
from tests.kommo.fixtures import widget_token
from tests.sync.world import ACCOUNT, INCOMING, PROPOSAL, QUALIFIED, WON

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def seed_accounts_leads(world):
    """8 leads in mapped stages, 1 outside: no email, invalid email, one address on two leads,
    one unsubscribed and one active at the ESP, three new addresses."""
    world.seed_subscriber("gone@shop.io", "unsubscribed")
    world.seed_subscriber("known@shop.io", "active" if world.kind == "mailerlite" else "subscribed")
    shared = world.contact("Shared", emails=["shared@shop.io"])
    for stage, contact in ((QUALIFIED, world.contact("No Mail", emails=[])),
                           (QUALIFIED, world.contact("Bad", emails=["not-an-address"])),
                           (QUALIFIED, shared), (WON, shared),
                           (PROPOSAL, world.contact("Gone", emails=["gone@shop.io"])),
                           (PROPOSAL, world.contact("Known", emails=["known@shop.io"])),
                           (WON, world.contact("New One", emails=["new1@shop.io"])),
                           (WON, world.contact("New Two", emails=["new2@shop.io"])),
                           (INCOMING, world.contact("Elsewhere", emails=["out@shop.io"]))):
        world.lead(stage, [contact])


def esp_writes(world):
    """Requests that change something at the ESP (a MailerLite `/batch` of look-ups does not)."""
    return [r for r in world.esp_requests() if r.method in WRITES and not (
        r.url.path.endswith("/batch")
        and all(q["method"] == "GET" for q in json.loads(r.content)["requests"]))]


async def run(world, *, dry_run, choice="subscribed"):
    await backfill.start(world.resources, ACCOUNT, dry_run=dry_run, new_subscribers_as=choice)
    await world.drain()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=world.app),
                                  base_url="https://mailsync.test") as client:
        answer = await client.get("/api/widget/backfill",
                                  headers={"X-Auth-Token": widget_token(world.resources.settings, ACCOUNT)})
    return answer.json()


async def test_the_preview_counts_and_writes_nothing(world):
    await world.map(MAPPING)
    seed_accounts_leads(world)
    world.router.requests.clear()
    state = await run(world, dry_run=True)
    assert {k: v for k, v in state.items() if k != "backfill_id"} == {
        "state": "done", "dry_run": True, "new_subscribers_as": "subscribed", "total": 8,
        "done": 8, "skipped": {"no_email": 1, "no_consent": 0, "opted_out": 0, "invalid_email": 1},
        "new_subscribers": 3, "existing": 2, "duplicates": 1, "already_opted_out": 1,
        "errors": 0, "error": None, "started_at": state["started_at"],
        "finished_at": state["finished_at"]}
    assert esp_writes(world) == []
    assert world.subscriber("new1@shop.io") == (None, set())


async def test_skip_only_updates_people_already_on_the_list(world):
    await world.map(MAPPING)
    seed_accounts_leads(world)
    state = await run(world, dry_run=False, choice="skip")
    assert (state["state"], state["new_subscribers"], state["existing"]) == ("done", 3, 2)
    assert world.subscriber("new1@shop.io") == (None, set())
    assert world.subscriber("known@shop.io")[1] == {"proposal"}
    assert world.subscriber("gone@shop.io") == ("unsubscribed", {"proposal"})  # stays opted out


async def test_a_real_run_subscribes_and_segments_everyone_mapped(world):
    await world.map(MAPPING)
    seed_accounts_leads(world)
    state = await run(world, dry_run=False)
    assert (state["state"], state["done"], state["new_subscribers"], state["existing"],
            state["already_opted_out"], state["errors"]) == ("done", 8, 3, 2, 1, 0)
    assert world.subscriber("new2@shop.io")[1] == {"won"}
    assert world.subscriber("shared@shop.io")[1] == {"won"}  # the later lead decides
    assert world.subscriber("out@shop.io") == (None, set())  # its stage is not mapped


async def test_pages_resume_where_they_stopped(world):
    if world.kind == "mailerlite":
        world.esp.state.import_limit = 100  # six /batch imports here; the real 5 a minute is benched
    await world.map(MAPPING)
    for n in range(260):
        world.lead(QUALIFIED, [world.contact(f"P {n}", emails=[f"p{n}@shop.io"])])
    run_id = await backfill.start(world.resources, ACCOUNT, dry_run=False, new_subscribers_as="subscribed")
    await backfill.run_page(world.resources, ACCOUNT, run_id)  # page 1, then the worker "dies"
    async with world.resources.sessions() as session:
        row = await jobs_and_run(session, run_id)
    assert row == ("running", 2, 250, ["backfill_page"])  # the next page's job, coalesced
    await world.drain()  # the queued job reads page 2: page 1's progress was stored
    upserted = [m for body in world.esp_bodies() for m in _addresses(body)]
    assert sorted(upserted) == sorted({f"p{n}@shop.io" for n in range(260)})  # each exactly once


async def test_a_page_refused_at_its_import_waits_as_long_as_the_platform_says(world):
    if world.kind != "mailerlite":
        return  # Mailchimp has no import rule
    world.esp.state.import_limit = 2  # of the five /batch imports this page needs
    await world.map(MAPPING)
    for n in range(250):
        world.lead(QUALIFIED, [world.contact(f"P {n}", emails=[f"p{n}@shop.io"])])
    run_id = await backfill.start(world.resources, ACCOUNT, dry_run=False, new_subscribers_as="subscribed")
    with pytest.raises(UpstreamRateLimited) as refused:
        await backfill.run_page(world.resources, ACCOUNT, run_id)
    # the window's turn, not the 2 s of a first backoff: retried sooner, the page would read
    # its 250 leads from Kommo again only to be refused again
    assert refused.value.retry_after == 60
    written = [n for n in range(250) if world.subscriber(f"p{n}@shop.io")[0] is not None]
    assert written == list(range(100))  # two imports of 50 written, the third refused


def _addresses(body):
    if isinstance(body, dict) and "requests" in body:
        return [q["body"]["email"] for q in body["requests"] if q["method"] == "POST"]
    if isinstance(body, dict) and "members" in body:
        return [m["email_address"] for m in body["members"]]
    return []


async def jobs_and_run(session, run_id):
    from sqlmodel import select

    from backend.models import Backfill

    run = (await session.exec(select(Backfill).where(Backfill.id == run_id))).one()
    kinds = [j.kind for j in (await session.exec(select(Job).where(Job.state == "pending"))).all()]
    return run.state, run.next_page, run.done, kinds


async def test_a_second_start_while_one_runs_is_409(world):
    await world.map(MAPPING)
    await backfill.start(world.resources, ACCOUNT, dry_run=True, new_subscribers_as="subscribed")
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=world.app),
                                  base_url="https://mailsync.test") as client:
        answer = await client.post("/api/widget/backfill", json={"dry_run": True},
                                   headers={"X-Auth-Token": widget_token(world.resources.settings, ACCOUNT)})
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "backfill_running")
    assert jobs  # the queue module is what holds the first page's job

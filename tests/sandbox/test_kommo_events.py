"""The simulated Kommo's event log (`GET /api/v4/events`, kommo-events-tasks.md §B): what each change
records, the filters and paging mailsync uses, and the webhook deliveries it can drop or stop
(Kommo disables a webhook answered badly more than 100 times in 2 hours)."""

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.sandbox.kommo import KommoSandbox, create_kommo_sandbox
from backend.sandbox.kommo_store import EMAIL_FIELD, PIPELINE_ID, USER_ID, KommoStore
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

ACME = 29085424
QUALIFIED, PROPOSAL = 67548607, 67548619


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class Receiver:
    """Answers every delivery with `status`; remembers the bodies."""

    def __init__(self):
        self.status, self.bodies = 200, []
        self.app = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> JSONResponse:
        self.bodies.append((await request.body()).decode())
        return JSONResponse({}, status_code=self.status)


@pytest.fixture
async def scene():
    clock, receiver = Clock(1732540000.0), Receiver()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=receiver.app)) as hooks:
        sandbox = KommoSandbox(KommoStore(clock=clock), webhook_client=hooks, rate_limit=10_000)
        sandbox.store.add_account(ACME, "acme")
        sandbox.store.account(ACME).webhooks["http://receiver/hook"] = {
            "id": 1, "destination": "http://receiver/hook", "disabled": False,
            "settings": ["add_lead", "update_lead", "status_lead", "delete_lead", "add_contact",
                         "update_contact", "delete_contact"]}
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sandbox.app),
                                      base_url="http://kommo.test") as http:
            code = sandbox.store.authorize(ACME)
            issued = (await http.post("/oauth2/access_token", data={
                "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
                "grant_type": "authorization_code", "code": code})).json()
            http.headers["Authorization"] = f"Bearer {issued['access_token']}"
            yield sandbox, http, clock, receiver


def shapes(sandbox):
    return [(e.type, e.entity_type, e.entity_id, e.created_at, e.value_after, e.value_before)
            for e in sandbox.store.events.of(ACME)]


async def test_each_change_records_its_event(scene):
    sandbox, _, clock, _ = scene
    store = sandbox.store
    ann = store.add_contact(ACME, "Ann", emails=["ann@acme.io"])
    bob = store.add_contact(ACME, "Bob")
    clock.now += 1
    lead = store.add_lead(ACME, status_id=QUALIFIED, contacts=[ann.id])
    clock.now += 1
    await sandbox.change_stage(ACME, lead.id, PROPOSAL)
    await sandbox.change_emails(ACME, ann.id, ["ann@new.io"])
    await sandbox.link_contact(ACME, lead.id, bob.id)
    await sandbox.link_contact(ACME, lead.id, ann.id, linked=False)
    clock.now += 1
    await sandbox.delete_lead(ACME, lead.id)
    t, note = 1732540000, lambda n: [{"note": {"id": n}}]
    link = lambda cid: [{"link": {"entity": {"type": "contact", "id": cid}}}]  # noqa: E731
    assert shapes(sandbox) == [
        ("contact_added", "contact", ann.id, t, note(91000000), []),
        ("contact_added", "contact", bob.id, t, note(91000001), []),
        ("lead_added", "lead", lead.id, t + 1, note(91000002), []),
        ("lead_status_changed", "lead", lead.id, t + 2,
         [{"lead_status": {"id": PROPOSAL, "pipeline_id": PIPELINE_ID}}],
         [{"lead_status": {"id": QUALIFIED, "pipeline_id": PIPELINE_ID}}]),
        (f"custom_field_{EMAIL_FIELD}_value_changed", "contact", ann.id, t + 2,
         [{"custom_field_value": {"field_id": EMAIL_FIELD, "field_type": 8, "enum_id": None,
                                  "text": "ann@new.io"}}],
         [{"custom_field_value": {"field_id": EMAIL_FIELD, "field_type": 8, "enum_id": None,
                                  "text": "ann@acme.io"}}]),
        ("entity_linked", "lead", lead.id, t + 2, link(bob.id), []),
        ("entity_unlinked", "lead", lead.id, t + 2, [], link(ann.id)),
        ("lead_deleted", "lead", lead.id, t + 3, [], []),
    ]
    assert lead.contacts == [(bob.id, True)]  # Ann was main; Bob, left alone, is now
    assert ACME in sandbox.store.accounts and lead.id not in sandbox.store.account(ACME).leads
    ids = [e.id for e in sandbox.store.events.of(ACME)]
    assert ids == sorted(ids) and all(len(i) == 26 and i == i.lower() for i in ids)


async def test_the_list_filters_by_type_entity_and_time_newest_first(scene):
    sandbox, http, clock, _ = scene
    store = sandbox.store
    ann = store.add_contact(ACME, "Ann")
    leads = []
    for _ in range(3):
        clock.now += 10
        leads.append(store.add_lead(ACME, status_id=QUALIFIED).id)
    clock.now += 10
    store.move_lead(ACME, leads[0], PROPOSAL)

    async def listed(query):
        answer = await http.get(f"/api/v4/events?{query}")
        if answer.status_code == 204:
            return 204
        body = answer.json()
        assert answer.headers["content-type"] == "application/hal+json"
        return [(e["type"], e["entity_id"]) for e in body["_embedded"]["events"]]

    assert await listed("filter[type][]=lead_added&filter[type][]=lead_status_changed") == [
        ("lead_status_changed", leads[0]), ("lead_added", leads[2]), ("lead_added", leads[1]),
        ("lead_added", leads[0])]
    assert await listed("filter[type]=contact_added,lead_status_changed") == [
        ("lead_status_changed", leads[0]), ("contact_added", ann.id)]
    assert await listed("filter[entity][]=contact") == [("contact_added", ann.id)]
    assert await listed(f"filter[entity][]=lead&filter[entity_id][]={leads[1]}") == [
        ("lead_added", leads[1])]
    start = 1732540000
    assert await listed(f"filter[created_at][from]={start + 20}&filter[created_at][to]={start + 30}") == [
        ("lead_added", leads[2]), ("lead_added", leads[1])]
    assert await listed(f"filter[created_at]={start + 20},{start + 30}") == [
        ("lead_added", leads[2]), ("lead_added", leads[1])]
    assert await listed(f"filter[created_at]={start + 30}") == [("lead_status_changed", leads[0])]
    assert await listed(f"filter[created_at][from]={start + 41}") == 204
    refused = await http.get(f"/api/v4/events?filter[entity_id][]={leads[1]}")
    assert (refused.status_code, refused.json()["detail"]) == (
        400, "filter[entity_id] needs exactly one filter[entity]")
    event = (await http.get("/api/v4/events?limit=1")).json()["_embedded"]["events"][0]
    assert (event["created_by"], event["account_id"], event["_embedded"]) == (
        USER_ID, ACME, {"entity": {"id": leads[0]}})


async def test_pages_of_at_most_100_and_50_when_asked_for_more(scene):
    sandbox, http, _, _ = scene
    for _ in range(230):
        sandbox.store.add_lead(ACME)
    first = (await http.get("/api/v4/events?limit=100")).json()
    third = (await http.get("/api/v4/events?limit=100&page=3")).json()
    assert len(first["_embedded"]["events"]) == 100
    assert first["_links"]["next"]["href"] == "https://acme.kommo.com/api/v4/events?page=2&limit=100"
    assert len(third["_embedded"]["events"]) == 30 and "next" not in third["_links"]
    assert (await http.get("/api/v4/events?limit=100&page=4")).status_code == 204
    # Real clients asking for 250 got 50 back (kommo-events-tasks.md §B.2).
    assert len((await http.get("/api/v4/events?limit=250")).json()["_embedded"]["events"]) == 50


async def test_dropped_deliveries_are_never_sent(scene):
    sandbox, _, _, receiver = scene
    lead = sandbox.store.add_lead(ACME, status_id=QUALIFIED)
    sandbox.delivery.drop_next(1)
    [lost] = await sandbox.change_stage(ACME, lead.id, PROPOSAL)
    [sent] = await sandbox.change_stage(ACME, lead.id, 142)
    assert (lost.dropped, lost.status, sent.dropped, sent.status) == (True, None, False, 200)
    assert len(receiver.bodies) == 1 and "142" in receiver.bodies[0]
    sandbox.delivery.drop_all = True
    assert [d.dropped for d in await sandbox.change_stage(ACME, lead.id, 143)] == [True]
    assert (sandbox.delivery.dropped, len(receiver.bodies)) == (2, 1)
    # The change itself happened, and Kommo's log has it.
    assert [e.type for e in sandbox.store.events.of(ACME)][-3:] == ["lead_status_changed"] * 3


async def test_more_than_100_bad_answers_in_2_hours_disable_the_webhook(scene):
    sandbox, _, clock, receiver = scene
    hook = sandbox.store.account(ACME).webhooks["http://receiver/hook"]
    lead = sandbox.store.add_lead(ACME)
    receiver.status = 500
    for _ in range(60):
        await sandbox.fire_lead(ACME, lead.id, "update")
    clock.now += 2 * 3600  # the first 60 fall out of the window
    for _ in range(100):
        await sandbox.fire_lead(ACME, lead.id, "update")
    assert (hook["disabled"], sandbox.delivery.bad_answers("http://receiver/hook")) == (False, 100)
    await sandbox.fire_lead(ACME, lead.id, "update")
    assert hook["disabled"] is True
    assert await sandbox.fire_lead(ACME, lead.id, "update") == []  # nothing is sent any more
    receiver.status = 200


async def test_the_drop_switch_over_http():
    app = create_kommo_sandbox()
    policy = app.state.sandbox.delivery
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://k") as http:
        assert (await http.post("/_sandbox/webhooks/drop", json={"next": 3})).json() == {
            "drop_all": False, "drops_left": 3, "dropped": 0}
        assert (await http.post("/_sandbox/webhooks/drop", json={"all": True})).json()["drop_all"] is True
    assert (policy.drops_left, policy.drop_all) == (3, True)

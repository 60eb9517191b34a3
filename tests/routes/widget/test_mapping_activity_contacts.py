"""PUT /api/widget/mapping, GET /api/widget/activity, GET /api/widget/contacts/{id} and
POST /api/widget/resync (docs/ARCHITECTURE.md §3), on both providers against their simulators."""

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from sqlmodel import select

from backend import activity_log, connections, contact_states, jobs, repository
from backend.jobs import JobSpec
from backend.models import Activity, ContactState, InboxEvent, Job
from backend.sandbox.kommo_store import PIPELINE_ID
from backend.sync.options import SyncOptions
from tests.kommo.fixtures import widget_token
from tests.sync.world import ACCOUNT, INCOMING, LOST, PROPOSAL, QUALIFIED, WON

OTHER = 31000001
AT = datetime(2026, 3, 26, 21, 40, 57, tzinfo=UTC)
KOMMO_PIPELINES = ["GET /api/v4/leads/pipelines"]
NO_TOKEN = {"error": {"code": "invalid_token", "message": "the X-Auth-Token header is missing"}}


@pytest.fixture
async def widget(world):
    """A client of our app. Mailchimp tags exist only once created, so create the world's."""
    if world.kind == "mailchimp":
        async with world.resources.sessions() as session:
            connection = await repository.get_esp_connection(session, ACCOUNT)
        provider = connections.provider_for(connection, world.resources)
        for name in world.segments:
            await provider.create_segment(name)
    world.router.requests.clear()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=world.app),
                                  base_url="https://mailsync.test") as client:
        yield client


def user(world, *, admin=True, account=ACCOUNT):
    return {"X-Auth-Token": widget_token(world.resources.settings, account, is_admin=admin)}


def esp_calls(world):
    return [f"{r.method} {r.url.path}" for r in world.esp_requests()]


def kommo_calls(world):
    return [f"{r.method} {r.url.path}" for r in world.kommo_requests()]


def provider_body(world):
    if world.kind == "mailchimp":
        return {"kind": "mailchimp", "label": "", "status": "ok", "list_id": world.list_id,
                "list_name": None}
    return {"kind": "mailerlite", "label": "", "status": "ok"}


def account_body(world, rules=(), options=None):
    return {"account_id": ACCOUNT, "subdomain": "acme", "status": "active",
            "provider": provider_body(world), "mapping": {"rules": list(rules)},
            "options": options or SyncOptions().to_json(),
            "stats": {"synced_contacts": 0, "pending_jobs": 0, "failed_jobs": 0,
                      "last_sync_at": None}}


async def add_account(world, account_id):
    async with world.resources.sessions() as session, session.begin():
        await repository.upsert_account(session, account_id, host="beta.kommo.com", subdomain="beta")


# --- PUT /api/widget/mapping ---------------------------------------------------------------


def rule(stage, action="segment", segment=None):
    body = {"pipeline_id": PIPELINE_ID, "status_id": stage, "action": action}
    return body if segment is None else {**body, "segment_id": segment}


async def test_a_valid_mapping_is_stored_and_answered(world, widget):
    seg = world.segments
    sent = {"rules": [rule(QUALIFIED, segment=seg["qualified"]), rule(PROPOSAL, "unsubscribe"),
                      rule(WON, segment=seg["won"]), rule(LOST, "remove")],
            "options": {"notes_on_sync": True, "new_contact_segment_id": seg["vip"]}}
    answer = await widget.put("/api/widget/mapping", json=sent, headers=user(world))
    stored_rules = [rule(WON, segment=seg["won"]), rule(LOST, "remove"),
                    rule(QUALIFIED, segment=seg["qualified"]), rule(PROPOSAL, "unsubscribe")]
    options = {**SyncOptions().to_json(), "notes_on_sync": True, "new_contact_segment_id": seg["vip"]}
    expected = account_body(world, stored_rules, options)
    assert (answer.status_code, answer.json()) == (200, expected)
    assert kommo_calls(world) == KOMMO_PIPELINES
    assert len(esp_calls(world)) == 1 and esp_calls(world)[0].startswith("GET ")
    again = await widget.get("/api/widget/account", headers=user(world, admin=False))
    assert again.json() == expected
    async with world.resources.sessions() as session:
        labels = await repository.get_labels(session, ACCOUNT)
    name = str.title if world.kind == "mailerlite" else str
    assert labels == {  # for the activity's words; Proposal and Lost name no segment but are stages
        "segments": {seg[s]: name(s) for s in ("qualified", "won", "vip")},
        "stages": {f"{PIPELINE_ID}:{QUALIFIED}": "Qualified", f"{PIPELINE_ID}:{PROPOSAL}": "Proposal",
                   f"{PIPELINE_ID}:{WON}": "Closed - won", f"{PIPELINE_ID}:{LOST}": "Closed - lost"}}


async def test_a_new_mapping_replaces_the_old_one(world, widget):
    first = {"rules": [rule(QUALIFIED, segment=world.segments["qualified"])],
             "options": {"email_choice": "WORK"}}
    assert (await widget.put("/api/widget/mapping", json=first, headers=user(world))).status_code == 200
    answer = await widget.put("/api/widget/mapping", json={"rules": [rule(LOST, "remove")]},
                              headers=user(world))
    assert (answer.status_code, answer.json()) == (200, account_body(world, [rule(LOST, "remove")]))


def invalid_cases(seg):
    ok = rule(QUALIFIED, segment=seg["qualified"])
    return {
        "unknown pipeline": ({"rules": [{**ok, "pipeline_id": 999}]},
                             "rule 1: pipeline 999 does not exist in Kommo", True),
        "unknown stage": ({"rules": [ok, rule(555, "remove")]},
                          f"rule 2: stage 555 is not in pipeline {PIPELINE_ID}", True),
        "unknown segment": ({"rules": [ok, rule(WON, segment="no-such-segment")]},
                            "rule 2: segment no-such-segment does not exist at the email platform", True),
        "unknown welcome segment": ({"rules": [ok], "options": {"new_contact_segment_id": "nope"}},
                                    "new_contact_segment_id nope does not exist at the email platform",
                                    True),
        "bad action": ({"rules": [{**ok, "action": "teleport"}]},
                       "rule 1: action must be one of segment, unsubscribe, remove", False),
        "segment without id": ({"rules": [rule(WON)]},
                               'rule 1: action "segment" needs a segment_id', False),
        "stage twice": ({"rules": [ok, rule(QUALIFIED, "remove")]},
                        f"rule 2: stage {QUALIFIED} of pipeline {PIPELINE_ID} is mapped twice", False),
        "rules missing": ({"options": {}}, "rules must be a list", False),
        "unknown option": ({"rules": [ok], "options": {"colour": "red"}},
                           "unknown option(s): colour", False),
    }


@pytest.mark.parametrize("case", ["unknown pipeline", "unknown stage", "unknown segment",
                                  "unknown welcome segment", "bad action", "segment without id",
                                  "stage twice", "rules missing", "unknown option"])
async def test_an_invalid_mapping_is_refused_and_nothing_is_stored(world, widget, case):
    await world.map({WON: "won"}, notes_on_sync=True)
    before = (await widget.get("/api/widget/account", headers=user(world))).json()
    body, message, asked_live = invalid_cases(world.segments)[case]
    answer = await widget.put("/api/widget/mapping", json=body, headers=user(world))
    assert (answer.status_code, answer.json()) == (
        422, {"error": {"code": "invalid_mapping", "message": message}})
    assert kommo_calls(world) == (KOMMO_PIPELINES if asked_live else [])
    assert len(esp_calls(world)) == (1 if asked_live else 0)
    assert (await widget.get("/api/widget/account", headers=user(world))).json() == before


async def test_a_mapping_needs_a_connected_email_platform(world, widget):
    async with world.resources.sessions() as session, session.begin():
        await repository.delete_esp_connection(session, ACCOUNT)
    answer = await widget.put("/api/widget/mapping", json={"rules": [rule(LOST, "remove")]},
                              headers=user(world))
    assert (answer.status_code, answer.json()) == (422, {"error": {
        "code": "invalid_mapping", "message": "connect an email platform first"}})
    assert world.router.requests == []
    async with world.resources.sessions() as session:
        assert await repository.get_mapping(session, ACCOUNT) == []


@pytest.mark.parametrize("body, message", [(b"{not json", "the body is not JSON"),
                                           (b"[]", "the body must be a JSON object")])
async def test_a_mapping_body_that_is_not_an_object_is_400(world, widget, body, message):
    answer = await widget.put("/api/widget/mapping", content=body, headers=user(world))
    assert (answer.status_code, answer.json()) == (400, {"error": {
        "code": "malformed_body", "message": message}})


async def test_only_admins_change_the_mapping(world, widget):
    sent = {"rules": [rule(LOST, "remove")]}
    answer = await widget.put("/api/widget/mapping", json=sent, headers=user(world, admin=False))
    assert (answer.status_code, answer.json()) == (403, {"error": {
        "code": "admin_required", "message": "only account administrators can change mailsync settings"}})
    assert world.router.requests == []
    async with world.resources.sessions() as session:
        assert await repository.get_mapping(session, ACCOUNT) == []
        assert await repository.get_options(session, ACCOUNT) == {}


# --- GET /api/widget/activity --------------------------------------------------------------


async def seed_activity(world):
    rows = [
        (ACCOUNT, Activity(account_id=ACCOUNT, at=AT, direction="to_esp", lead_id=11, contact_id=21,
                           email="jane.doe@shop.io", summary="added to Qualified", outcome="ok")),
        (OTHER, Activity(account_id=OTHER, at=AT, direction="to_esp", email="beta@other.io",
                         summary="account B's business", outcome="ok")),
        (ACCOUNT, Activity(account_id=ACCOUNT, at=AT + timedelta(minutes=1), direction="to_esp",
                           contact_id=22, email="Bob@Fake.io", summary="MailerLite refused the address",
                           outcome="failed", detail="bob@fake.io looks fake or invalid")),
        (ACCOUNT, Activity(account_id=ACCOUNT, at=AT + timedelta(minutes=2), direction="to_kommo",
                           email=None, summary="unsubscribed at Mailchimp: noted on 1 lead",
                           outcome="skipped")),
    ]
    await add_account(world, OTHER)
    async with world.resources.sessions() as session, session.begin():
        for account_id, row in rows:
            await activity_log.add_activity(session, account_id, row)


ACTIVITY_FOR_ADMIN = [
    {"at": "2026-03-26T21:42:57Z", "direction": "to_kommo", "email": None,
     "summary": "unsubscribed at Mailchimp: noted on 1 lead", "outcome": "skipped"},
    {"at": "2026-03-26T21:41:57Z", "direction": "to_esp", "contact_id": 22, "email": "Bob@Fake.io",
     "summary": "MailerLite refused the address", "outcome": "failed",
     "detail": "bob@fake.io looks fake or invalid"},
    {"at": "2026-03-26T21:40:57Z", "direction": "to_esp", "lead_id": 11, "contact_id": 21,
     "email": "jane.doe@shop.io", "summary": "added to Qualified", "outcome": "ok"},
]


async def test_activity_is_newest_first_and_only_the_accounts_own(world, widget):
    await seed_activity(world)
    answer = await widget.get("/api/widget/activity", headers=user(world))
    assert (answer.status_code, answer.json()) == (200, ACTIVITY_FOR_ADMIN)
    limited = await widget.get("/api/widget/activity?limit=2", headers=user(world))
    assert (limited.status_code, limited.json()) == (200, ACTIVITY_FOR_ADMIN[:2])
    as_other = await widget.get("/api/widget/activity", headers=user(world, account=OTHER))
    assert [a["summary"] for a in as_other.json()] == ["account B's business"]
    assert world.router.requests == []


async def test_activity_masks_addresses_for_non_admins(world, widget):
    await seed_activity(world)
    answer = await widget.get("/api/widget/activity", headers=user(world, admin=False))
    masked = [dict(a) for a in ACTIVITY_FOR_ADMIN]
    masked[1].update(email="B***@Fake.io", detail="B***@Fake.io looks fake or invalid")
    masked[2].update(email="j***@shop.io")
    assert (answer.status_code, answer.json()) == (200, masked)


async def test_activity_of_a_new_account_is_empty(world, widget):
    answer = await widget.get("/api/widget/activity", headers=user(world))
    assert (answer.status_code, answer.json()) == (200, [])


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "", "2.5", "99999"])
async def test_a_bad_activity_limit_is_400(world, widget, limit):
    answer = await widget.get("/api/widget/activity", params={"limit": limit}, headers=user(world))
    assert (answer.status_code, answer.json()) == (400, {"error": {
        "code": "invalid_limit", "message": "limit must be a whole number from 1 to 500"}})


# --- GET /api/widget/contacts/{contact_id} -------------------------------------------------


async def seed_contact(world, contact_id=4242, **fields):
    state = ContactState(account_id=ACCOUNT, contact_id=contact_id, email="Jane.Doe@shop.io",
                         esp_status="active", segments=[world.segments["qualified"]], lead_id=11,
                         last_synced_at=AT, **fields)
    async with world.resources.sessions() as session, session.begin():
        await contact_states.save_contact_state(session, state)


async def test_the_card_panel_reads_the_contacts_state(world, widget):
    await seed_contact(world)
    answer = await widget.get("/api/widget/contacts/4242", headers=user(world))
    assert (answer.status_code, answer.json()) == (200, {
        "email": "jane.doe@shop.io", "esp_status": "active", "segments": [world.segments["qualified"]],
        "last_synced_at": "2026-03-26T21:40:57Z", "last_error": None})
    assert world.router.requests == []


async def test_the_card_panel_masks_the_address_for_non_admins(world, widget):
    await seed_contact(world, last_error="jane.doe@shop.io is in compliance state")
    answer = await widget.get("/api/widget/contacts/4242", headers=user(world, admin=False))
    assert (answer.status_code, answer.json()) == (200, {
        "email": "j***@shop.io", "esp_status": "active", "segments": [world.segments["qualified"]],
        "last_synced_at": "2026-03-26T21:40:57Z", "last_error": "j***@shop.io is in compliance state"})


@pytest.mark.parametrize("path", ["/api/widget/contacts/4243", "/api/widget/contacts/0",
                                  "/api/widget/contacts/99999999999999999999"])
async def test_an_unknown_contact_is_404(world, widget, path):
    await seed_contact(world)
    answer = await widget.get(path, headers=user(world))
    assert (answer.status_code, answer.json()) == (404, {"error": {
        "code": "contact_not_found", "message": "mailsync has not synced this contact"}})


async def test_account_b_never_sees_account_as_contact(world, widget):
    await seed_contact(world)
    await add_account(world, OTHER)
    answer = await widget.get("/api/widget/contacts/4242", headers=user(world, account=OTHER))
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "contact_not_found")


# --- POST /api/widget/resync ---------------------------------------------------------------


async def pending_jobs(world):
    async with world.resources.sessions() as session:
        rows = (await session.exec(select(Job).where(Job.state == "pending"))).all()
    return [(j.account_id, j.kind, j.coalesce_key, j.payload) for j in rows]


async def inbox_sources(world):
    async with world.resources.sessions() as session:
        return [e.source for e in (await session.exec(select(InboxEvent))).all()]


async def test_resync_of_a_lead_queues_one_job_that_reconciles_it(world, widget):
    await world.map({QUALIFIED: "qualified"})
    lead = world.lead(QUALIFIED, [world.contact()])
    for _ in range(2):  # by a non-admin: resync changes no setting
        answer = await widget.post("/api/widget/resync", json={"lead_id": lead},
                                   headers=user(world, admin=False))
        assert (answer.status_code, answer.json()) == (202, {"queued": True})
    assert await pending_jobs(world) == [(ACCOUNT, "reconcile_lead", f"reconcile_lead:{ACCOUNT}:{lead}",
                                          {"lead_id": lead, "action": "resync"})]
    assert await inbox_sources(world) == ["widget", "widget"]
    assert world.router.requests == []
    await world.drain()
    assert world.subscriber("jane@shop.io")[1] == {"qualified"}


async def test_resync_coalesces_with_a_job_already_pending(world, widget):
    contact = world.contact()
    async with world.resources.sessions() as session, session.begin():
        await jobs.enqueue(session, [JobSpec(ACCOUNT, "reconcile_contact",
                                             f"reconcile_contact:{ACCOUNT}:{contact}",
                                             {"contact_id": contact, "action": "update"})])
    answer = await widget.post("/api/widget/resync", json={"contact_id": contact}, headers=user(world))
    assert (answer.status_code, answer.json()) == (202, {"queued": True})
    assert await pending_jobs(world) == [(ACCOUNT, "reconcile_contact",
                                          f"reconcile_contact:{ACCOUNT}:{contact}",
                                          {"contact_id": contact, "action": "resync"})]


@pytest.mark.parametrize("body, message", [
    ({}, "send either lead_id or contact_id"),
    ({"lead_id": 5, "contact_id": 6}, "send either lead_id or contact_id"),
    ({"lead_id": None}, "send either lead_id or contact_id"),
    ({"lead_id": 0}, "lead_id must be a positive whole number"),
    ({"lead_id": -3}, "lead_id must be a positive whole number"),
    ({"contact_id": "12"}, "contact_id must be a positive whole number"),
    ({"contact_id": True}, "contact_id must be a positive whole number"),
    ({"lead_id": 1.5}, "lead_id must be a positive whole number"),
])
async def test_an_invalid_resync_is_422_and_queues_nothing(world, widget, body, message):
    answer = await widget.post("/api/widget/resync", json=body, headers=user(world))
    assert (answer.status_code, answer.json()) == (422, {"error": {
        "code": "invalid_resync", "message": message}})
    assert await pending_jobs(world) == []
    assert await inbox_sources(world) == []


async def test_a_resync_body_that_is_not_json_is_400(world, widget):
    answer = await widget.post("/api/widget/resync", content=b"lead_id=5", headers=user(world))
    assert (answer.status_code, answer.json()) == (400, {"error": {
        "code": "malformed_body", "message": "the body is not JSON"}})
    assert await pending_jobs(world) == []


# --- authentication ------------------------------------------------------------------------

ROUTES = [("PUT", "/api/widget/mapping", {"rules": []}), ("GET", "/api/widget/activity", None),
          ("GET", "/api/widget/contacts/4242", None), ("POST", "/api/widget/resync", {"lead_id": 1})]


@pytest.mark.parametrize("method, path, body", ROUTES)
async def test_no_or_a_forged_token_is_401(world, widget, method, path, body):
    await seed_contact(world)
    missing = await widget.request(method, path, json=body)
    assert (missing.status_code, missing.json()) == (401, NO_TOKEN)
    forged = {"X-Auth-Token": widget_token(world.resources.settings, ACCOUNT,
                                           secret="someone-elses-secret-0123456789abcdef")}
    answer = await widget.request(method, path, json=body, headers=forged)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token")
    assert answer.json()["error"]["message"].startswith("X-Auth-Token is not valid")
    assert world.router.requests == []
    assert await pending_jobs(world) == []


@pytest.mark.parametrize("method, path, body", ROUTES)
async def test_a_token_for_an_account_not_installed_is_404(world, widget, method, path, body):
    answer = await widget.request(method, path, json=body, headers=user(world, account=4242))
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "account_not_found")


async def test_unmapped_incoming_stage_is_left_alone_by_resync(world, widget):
    await world.map({QUALIFIED: "qualified"})
    lead = world.lead(INCOMING, [world.contact()])
    answer = await widget.post("/api/widget/resync", json={"lead_id": lead}, headers=user(world))
    assert answer.status_code == 202
    await world.drain()
    assert world.subscriber("jane@shop.io") == (None, set())

"""POST /webhooks/kommo/{hook_key}: verify → store → acknowledge, with no outbound call."""

from pathlib import Path

import pytest
from sqlmodel import select

from backend import repository
from backend.models import InboxEvent, Job

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kommo"
ACCOUNT = 29085424


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
async def hook(offline_app, offline_client):
    """An installed account, and a client for an app that may make no outbound call."""
    resources = offline_app.state.resources
    async with resources.sessions() as session, session.begin():
        account = await repository.upsert_account(session, ACCOUNT, host="acme.kommo.com",
                                                  subdomain="acme")
    return offline_client, f"/webhooks/kommo/{account.hook_key}", resources


async def post(client, url, body):
    return await client.post(url, content=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})


async def stored(resources):
    async with resources.sessions() as session:
        inbox = (await session.exec(select(InboxEvent))).all()
        jobs = (await session.exec(select(Job).order_by(Job.coalesce_key))).all()
    return inbox, jobs


async def test_status_change_of_two_leads_stores_one_delivery_and_two_jobs(hook):
    client, url, resources = hook
    response = await post(client, url, fixture("leads_status__two_leads.txt"))
    assert response.status_code == 200
    assert response.json() == {"accepted": 2}
    inbox, jobs = await stored(resources)
    assert len(inbox) == 1 and inbox[0].source == "kommo" and inbox[0].account_id == ACCOUNT
    assert [(j.kind, j.coalesce_key, j.state) for j in jobs] == [
        ("reconcile_lead", f"reconcile_lead:{ACCOUNT}:15318175", "pending"),
        ("reconcile_lead", f"reconcile_lead:{ACCOUNT}:15318176", "pending")]
    assert jobs[1].payload == {"lead_id": 15318176, "action": "status", "status_id": 142,
                               "pipeline_id": 7654321, "last_modified": 1732540001}


async def test_redelivery_is_acknowledged_and_stores_nothing(hook):
    client, url, resources = hook
    body = fixture("leads_status__two_leads.txt")
    assert (await post(client, url, body)).json() == {"accepted": 2}
    for _ in range(3):
        response = await post(client, url, body)
        assert (response.status_code, response.json()) == (200, {"accepted": 0})
    inbox, jobs = await stored(resources)
    assert (len(inbox), len(jobs)) == (1, 2)


async def test_fifty_changes_to_one_lead_coalesce_into_one_job(hook):
    client, url, resources = hook
    for n in range(50):
        body = (f"leads[status][0][id]=77&leads[status][0][status_id]={100 + n}"
                f"&leads[status][0][pipeline_id]=5&leads[status][0][last_modified]={1732540000 + n}"
                f"&account[id]={ACCOUNT}&account[subdomain]=acme")
        assert (await post(client, url, body.encode())).json() == {"accepted": 1}
    inbox, jobs = await stored(resources)
    assert len(inbox) == 50
    assert [(j.coalesce_key, j.payload["status_id"]) for j in jobs] == [
        (f"reconcile_lead:{ACCOUNT}:77", 149)]


@pytest.mark.parametrize("name, kind, key", [
    ("contacts_add__email_phone.txt", "reconcile_contact", "reconcile_contact"),
    ("contacts_update__email_changed.txt", "reconcile_contact", "reconcile_contact"),
    ("contacts_delete__basic.txt", "reconcile_contact", "reconcile_contact"),
    ("leads_add__one.txt", "reconcile_lead", "reconcile_lead"),
    ("leads_delete__basic.txt", "reconcile_lead", "reconcile_lead"),
])
async def test_each_fixture_enqueues_its_reconcile(hook, name, kind, key):
    client, url, resources = hook
    response = await post(client, url, fixture(name))
    assert response.status_code == 200 and response.json()["accepted"] >= 1
    _, jobs = await stored(resources)
    assert jobs and all(j.kind == kind and j.coalesce_key.startswith(f"{key}:{ACCOUNT}:") for j in jobs)


async def test_company_events_are_acknowledged_without_work(hook):
    client, url, resources = hook
    response = await post(client, url, fixture("contacts_add__company.txt"))
    assert (response.status_code, response.json()) == (200, {"accepted": 0})
    assert await stored(resources) == ([], [])


@pytest.mark.parametrize("body, code", [
    (b"leads[status][0][id]=abc&account[id]=29085424", "malformed_body"),
    (b"leads[status][0][id]=1", "malformed_body"),
    (b"\xff\xfe", "malformed_body"),
    (b"leads[status][0][id]=1&account[id]=1", "account_mismatch"),
])
async def test_malformed_or_foreign_bodies_are_refused_and_store_nothing(hook, body, code):
    client, url, resources = hook
    response = await post(client, url, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert await stored(resources) == ([], [])


async def test_unknown_hook_key_is_404(hook):
    client, _, resources = hook
    response = await post(client, "/webhooks/kommo/not-a-key", fixture("leads_add__one.txt"))
    assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_hook")
    assert await stored(resources) == ([], [])


async def test_disconnected_account_is_410(hook):
    client, url, resources = hook
    async with resources.sessions() as session, session.begin():
        await repository.set_account_status(session, ACCOUNT, "disconnected")
    response = await post(client, url, fixture("leads_add__one.txt"))
    assert (response.status_code, response.json()["error"]["code"]) == (410, "disconnected")


async def test_two_moves_in_the_same_second_are_two_deliveries(hook):
    """last_modified has one-second resolution: A→B→C within a second must not look like a
    redelivery of A→B."""
    client, url, resources = hook
    for old, new in ((100, 200), (200, 300)):
        body = (f"leads[status][0][id]=77&leads[status][0][status_id]={new}"
                f"&leads[status][0][old_status_id]={old}&leads[status][0][pipeline_id]=5"
                f"&leads[status][0][last_modified]=1732540000&account[id]={ACCOUNT}")
        assert (await post(client, url, body.encode())).json() == {"accepted": 1}
    inbox, jobs = await stored(resources)
    assert len(inbox) == 2 and jobs[0].payload["status_id"] == 300

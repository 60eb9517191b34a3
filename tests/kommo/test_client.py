"""KommoClient's typed calls against the simulated Kommo, its error mapping at the transport, and
the shared 7 requests/s budget."""

import asyncio
import dataclasses
import json

import httpx2
import pytest

from backend.errors import (
    PermanentRefusal,
    UpstreamError,
    UpstreamForbidden,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from backend.kommo.client import KommoClient
from backend.kommo.types import NewNote
from backend.sandbox.kommo_store import PIPELINE_ID
from tests.kommo.fixtures import ACME, BETA, Recorder, seed_tokens

QUALIFIED, PROPOSAL = 67548607, 67548619


@pytest.fixture
async def client(kommo, kommo_resources):
    await seed_tokens(kommo_resources, kommo)
    return KommoClient(kommo_resources, ACME)


def api_calls(kommo, path=None):
    return [r for r in kommo.requests if r.path.startswith("/api/") and (path is None or r.path == path)]


async def test_account_and_pipelines(client):
    assert (await client.account()).subdomain == "acme"
    [pipeline] = await client.pipelines()
    assert (pipeline.id, pipeline.name, pipeline.is_main) == (PIPELINE_ID, "Sales pipeline", True)
    assert [(s.id, s.name, s.type) for s in pipeline.stages] == [
        (67548601, "Incoming leads", 1), (QUALIFIED, "Qualified", 0), (PROPOSAL, "Proposal", 0),
        (142, "Closed - won", 0), (143, "Closed - lost", 0)]


async def test_lead_with_contacts_and_its_main_contact(client, kommo):
    ann = kommo.store.add_contact(ACME, "Ann Lee", emails=["ann@acme.io"])
    bob = kommo.store.add_contact(ACME, "Bob Roe")
    lead = kommo.store.add_lead(ACME, "Deal", status_id=QUALIFIED, contacts=[ann.id, bob.id])
    got = await client.lead(lead.id)
    assert (got.id, got.pipeline_id, got.status_id, got.main_contact_id) == (
        lead.id, PIPELINE_ID, QUALIFIED, ann.id)
    assert [(c.id, c.is_main) for c in got.contacts] == [(ann.id, True), (bob.id, False)]
    assert await client.lead(999) is None


async def test_contacts_by_ids_in_batches_of_250(client, kommo):
    ids = [kommo.store.add_contact(ACME, f"C{n}", emails=[f"c{n}@x.io"]).id for n in range(260)]
    found = await client.contacts([*ids, 1])
    assert sorted(c.id for c in found) == sorted(ids)
    calls = api_calls(kommo, "/api/v4/contacts")
    assert len(calls) == 2 and all("filter%5Bid%5D%5B%5D=" in c.query for c in calls)
    assert found[0].emails[0].value == "c0@x.io" and found[0].emails[0].enum_code == "WORK"
    assert await client.contacts([]) == []


async def test_contact_search_by_email_keeps_exact_matches_only(client, kommo):
    ann = kommo.store.add_contact(ACME, "Ann", emails=[("ann@acme.io", "PRIV")])
    kommo.store.add_contact(ACME, "Joann", emails=["joann@acme.io"])  # a substring match
    assert [c.id for c in await client.find_contacts_by_email("ANN@acme.io ")] == [ann.id]
    assert await client.find_contacts_by_email("nobody@acme.io") == []  # Kommo answers 204


async def test_leads_pages_of_250_filtered_by_stage(client, kommo):
    in_qualified = {kommo.store.add_lead(ACME, status_id=QUALIFIED).id for _ in range(300)}
    in_proposal = {kommo.store.add_lead(ACME, status_id=PROPOSAL).id for _ in range(3)}
    kommo.store.add_lead(ACME, status_id=142)
    first = await client.leads_page(1, stages=[(PIPELINE_ID, QUALIFIED)])
    assert (len(first.leads), first.has_next) == (250, True)
    both = [lead.id async for lead in client.iter_leads(stages=[(PIPELINE_ID, QUALIFIED),
                                                                (PIPELINE_ID, PROPOSAL)])]
    assert set(both) == in_qualified | in_proposal and len(both) == 303
    assert [lead.id async for lead in client.iter_leads(stages=[(PIPELINE_ID, 143)])] == []


async def test_notes_are_added_in_batches(client, kommo):
    lead = kommo.store.add_lead(ACME)
    notes = [NewNote(entity_id=lead.id, text=f"unsubscribed #{n}", request_id=f"r{n}") for n in range(60)]
    ids = await client.add_notes("leads", notes)
    assert len(ids) == 60 and len(set(ids)) == 60
    assert len(api_calls(kommo, "/api/v4/leads/notes")) == 2
    stored = kommo.store.account(ACME).notes[0]
    assert (stored["note_type"], stored["params"]) == (
        "service_message", {"text": "unsubscribed #0", "service": "mailsync"})


async def test_adding_a_tag_keeps_the_others(client, kommo):
    ann = kommo.store.add_contact(ACME, "Ann")
    ann.tags = [kommo.store.tag(kommo.store.account(ACME), {"name": "vip"})]
    assert await client.add_contact_tag(ann.id, "email-opt-out") is True
    assert [t["name"] for t in ann.tags] == ["vip", "email-opt-out"]
    assert await client.add_contact_tag(ann.id, "Email-Opt-Out") is False
    assert [c.method for c in api_calls(kommo, f"/api/v4/contacts/{ann.id}")] == ["GET", "PATCH", "GET"]
    with pytest.raises(UpstreamNotFound):
        await client.add_contact_tag(424242, "x")


async def test_custom_fields_list_and_create(client):
    assert [(f.id, f.code) for f in await client.custom_fields()] == [(771906, "PHONE"), (771908, "EMAIL")]
    created = await client.create_custom_field("Email consent", "checkbox", code="EMAIL_CONSENT")
    assert (created.name, created.type, created.code) == ("Email consent", "checkbox", "EMAIL_CONSENT")
    assert created.id in [f.id for f in await client.custom_fields()]
    assert [f.name for f in await client.custom_fields("leads")] == ["Budget"]


async def test_webhooks_add_list_delete(client, kommo):
    hook = await client.add_webhook("https://m.test/h/1", ["status_lead", "add_contact"])
    assert (hook.destination, hook.settings, hook.disabled) == (
        "https://m.test/h/1", ("status_lead", "add_contact"), False)
    await client.add_webhook("https://m.test/h/2", ["add_lead"])
    assert [h.destination for h in await client.webhooks("https://m.test/h/1")] == ["https://m.test/h/1"]
    assert len(await client.webhooks()) == 2
    await client.delete_webhook("https://m.test/h/1")
    assert [h.destination for h in await client.webhooks()] == ["https://m.test/h/2"]
    assert await client.webhooks("https://m.test/h/1") == []


async def test_one_account_never_reads_another(kommo, kommo_resources):
    await seed_tokens(kommo_resources, kommo)
    await seed_tokens(kommo_resources, kommo, BETA)
    beta_lead = kommo.store.add_lead(BETA)
    assert await KommoClient(kommo_resources, ACME).lead(beta_lead.id) is None
    assert (await KommoClient(kommo_resources, BETA).lead(beta_lead.id)).id == beta_lead.id


def mocked(resources, handler, **settings):
    recorder = Recorder(httpx2.MockTransport(handler))
    changed = dataclasses.replace(resources.settings, **settings)
    return dataclasses.replace(resources, http=httpx2.AsyncClient(transport=recorder),
                               settings=changed), recorder


async def test_calls_go_to_the_account_host_with_the_bearer_token(kommo, kommo_resources):
    tokens = await seed_tokens(kommo_resources, kommo)
    resources, recorder = mocked(kommo_resources, lambda r: httpx2.Response(204), kommo_api_base_url=None)
    assert await KommoClient(resources, ACME).contacts([5]) == []
    [request] = recorder.requests
    assert str(request.url).startswith("https://acme.kommo.com/api/v4/contacts?")
    assert request.headers["authorization"] == f"Bearer {tokens.access_token.reveal()}"
    assert request.headers["x-client-uuid"] == kommo_resources.settings.client_id
    await resources.http.aclose()


def problem(status, **extra):
    return httpx2.Response(status, headers={"Content-Type": "application/problem+json"}, content=json.dumps(
        {"title": "x", "type": f"https://httpstatus.es/{status}", "status": status, "detail": "d", **extra}))


@pytest.mark.parametrize("answer, error, retry_after", [
    (problem(402), UpstreamForbidden, None),
    (problem(403), UpstreamForbidden, None),
    (problem(404), UpstreamNotFound, None),
    (problem(429, retry_after=300), UpstreamRateLimited, 300.0),
    (httpx2.Response(429, text="slow down", headers={"Retry-After": "12"}), UpstreamRateLimited, 12.0),
    (problem(500, trace_id="t"), UpstreamUnavailable, None),
    (problem(504), UpstreamUnavailable, None),
    (problem(422), PermanentRefusal, None),
    (httpx2.Response(200, text="<html>"), UpstreamError, None),
])
async def test_status_codes_map_to_the_exception_tree(kommo, kommo_resources, answer, error, retry_after):
    await seed_tokens(kommo_resources, kommo)
    resources, _ = mocked(kommo_resources, lambda r: answer)
    with pytest.raises(error) as failed:
        await KommoClient(resources, ACME).pipelines()
    assert getattr(failed.value, "retry_after", None) == retry_after
    await resources.http.aclose()


async def test_fifty_calls_stay_within_the_budget(client, kommo, kommo_resources):
    """All at once, from two clients (as two workers would): the shared budget spaces them so
    the simulated Kommo, which allows 7 per second, never answers 429."""
    other = KommoClient(kommo_resources, ACME)
    await asyncio.gather(*((client if n % 2 else other).account() for n in range(50)))
    statuses = [r.status for r in api_calls(kommo)]
    assert len(statuses) == 50 and statuses.count(429) == 0


async def test_companies_by_ids_and_a_contact_s_company(client, kommo):
    acme = kommo.store.add_contact(ACME, "Acme Corp", kind="company")
    jane = kommo.store.add_contact(ACME, "Jane", emails=["jane@acme.io"], company_id=acme.id)
    assert (await client.contact(jane.id)).companies[0].id == acme.id
    assert [(c.id, c.name) for c in await client.companies([acme.id, 1])] == [(acme.id, "Acme Corp")]
    [call] = api_calls(kommo, "/api/v4/companies")
    assert call.query == f"filter%5Bid%5D%5B%5D=1&filter%5Bid%5D%5B%5D={acme.id}&limit=250"


async def test_leads_by_ids_in_batches_of_250(client, kommo):
    ids = [kommo.store.add_lead(ACME, f"L{n}", status_id=QUALIFIED).id for n in range(260)]
    found = await client.leads([*ids[5:], 1])
    assert sorted(lead.id for lead in found) == sorted(ids[5:])
    calls = api_calls(kommo, "/api/v4/leads")
    assert len(calls) == 2 and all("filter%5Bid%5D%5B%5D=" in c.query for c in calls)

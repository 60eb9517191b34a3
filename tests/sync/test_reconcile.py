"""Kommo → ESP, every row of docs/ARCHITECTURE.md §7, on both providers against their simulators."""

import json

import pytest

from backend.sync import reconcile
from tests.sync.world import ACCOUNT, INCOMING, LOST, PROPOSAL, QUALIFIED, WON

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won", LOST: "remove"}


async def run_lead(world, lead_id):
    await reconcile.reconcile_lead(world.resources, ACCOUNT, lead_id)


async def run_contact(world, contact_id):
    await reconcile.reconcile_contact(world.resources, ACCOUNT, contact_id)


def active(world):
    return "active" if world.kind == "mailerlite" else "subscribed"


async def test_first_sync_then_stage_moves(world):
    await world.map(MAPPING)
    contact = world.contact(emails=["Jane@Shop.io"])
    lead = world.lead(QUALIFIED, [contact])
    await run_lead(world, lead)
    assert world.subscriber("jane@shop.io") == (active(world), {"qualified"})
    state = await world.state(contact)
    assert (state.email, state.segments, state.lead_id) == (
        "jane@shop.io", [world.segments["qualified"]], lead)
    for stage, expected in ((PROPOSAL, {"proposal"}), (WON, {"won"}), (LOST, set())):
        world.move(lead, stage)
        await run_lead(world, lead)
        assert world.subscriber("jane@shop.io") == (active(world), expected)
    assert [a.outcome for a in await world.activity()] == ["ok"] * 4
    noun, name = ("group", str.title) if world.kind == "mailerlite" else ("tag", str)
    assert [a.summary for a in await world.activity()] == [
        f"added to {noun} “{name('qualified')}” (stage Qualified)",
        f"moved to {noun} “{name('proposal')}” (stage Proposal)",
        f"moved to {noun} “{name('won')}” (stage Closed - won)",
        f"removed from {noun} “{name('won')}” (stage Closed - lost)"]


async def test_unmanaged_segments_are_never_touched(world):
    await world.map(MAPPING)
    world.seed_subscriber("jane@shop.io", active(world), ["vip", "qualified"])
    lead = world.lead(WON, [world.contact()])
    await run_lead(world, lead)
    assert world.subscriber("jane@shop.io") == (active(world), {"vip", "won"})


async def test_unmapped_stage_changes_nothing(world):
    await world.map(MAPPING)
    lead = world.lead(QUALIFIED, [world.contact()])
    await run_lead(world, lead)
    sent = len(world.esp_requests())
    world.move(lead, INCOMING)
    await run_lead(world, lead)
    assert len(world.esp_requests()) == sent
    assert world.subscriber("jane@shop.io")[1] == {"qualified"}


async def test_unsubscribe_action_keeps_segments(world):
    await world.map({**MAPPING, LOST: "unsubscribe"})
    lead = world.lead(QUALIFIED, [world.contact()])
    await run_lead(world, lead)
    world.move(lead, LOST)
    await run_lead(world, lead)
    assert world.subscriber("jane@shop.io") == ("unsubscribed", {"qualified"})


async def test_no_email_is_skipped_without_esp_calls(world):
    await world.map(MAPPING)
    lead = world.lead(QUALIFIED, [world.contact(emails=[])])
    await run_lead(world, lead)
    assert world.esp_requests() == []
    assert [(a.outcome, a.summary) for a in await world.activity()] == [("skipped", "skipped: no email")]


async def test_email_choice_picks_the_work_address(world):
    await world.map(MAPPING, email_choice="WORK")
    contact = world.contact(emails=[("home@shop.io", "PRIV"), ("work@shop.io", "WORK")])
    await run_lead(world, world.lead(QUALIFIED, [contact]))
    assert world.subscriber("work@shop.io")[1] == {"qualified"}
    assert world.subscriber("home@shop.io") == (None, set())


@pytest.mark.parametrize("no_consent, expected", [("skip", None), ("pending", "pending")])
async def test_consent_field(world, no_consent, expected):
    await world.map(MAPPING, consent_field_id=555, no_consent=no_consent)
    await run_lead(world, world.lead(QUALIFIED, [world.contact()]))
    status, segments = world.subscriber("jane@shop.io")
    if expected is None:
        assert status is None and world.esp_requests() == []
        assert (await world.activity())[-1].summary == "skipped: no consent"
    else:
        assert status == ("unconfirmed" if world.kind == "mailerlite" else "pending")
        assert segments == {"qualified"}


@pytest.mark.parametrize("opted_out", ["unsubscribed", "bounced", "junk", "cleaned"])
async def test_opted_out_address_is_never_reactivated(world, opted_out):
    statuses = {"mailerlite": ("unsubscribed", "bounced", "junk"),
                "mailchimp": ("unsubscribed", "cleaned")}
    if opted_out not in statuses[world.kind]:
        pytest.skip(f"{world.kind} has no {opted_out} status")
    await world.map(MAPPING)
    world.seed_subscriber("jane@shop.io", opted_out)
    lead = world.lead(QUALIFIED, [world.contact()])
    await run_lead(world, lead)
    world.move(lead, WON)
    await run_lead(world, lead)
    assert world.subscriber("jane@shop.io") == (opted_out, {"won"})
    for body in world.esp_bodies():
        if isinstance(body, dict):
            assert body.get("status") not in ("active", "subscribed")
            assert body.get("status_if_new") in (None, "subscribed", "pending")


async def test_one_address_two_leads_most_recent_lead_decides(world):
    await world.map(MAPPING)
    contact = world.contact()
    older = world.lead(QUALIFIED, [contact])
    world.kommo.store.clock = lambda: 2_000_000_000  # the second lead is updated later
    newer = world.lead(PROPOSAL, [contact])
    await run_lead(world, newer)
    await run_lead(world, older)  # a late job for the older lead must not win
    assert world.subscriber("jane@shop.io")[1] == {"proposal"}
    assert (await world.activity())[-1].summary == (
        f"skipped: lead {newer} was updated more recently and decides this contact's segment")


async def test_contact_email_change_moves_the_segment_to_the_new_address(world):
    await world.map(MAPPING)
    contact = world.contact()
    await run_lead(world, world.lead(QUALIFIED, [contact]))
    world.kommo.store.contact(ACCOUNT, contact).emails = [("jane.new@shop.io", "WORK")]
    await run_contact(world, contact)
    assert world.subscriber("jane.new@shop.io")[1] == {"qualified"}
    assert world.subscriber("jane@shop.io")[1] == set()
    assert (await world.state(contact)).email == "jane.new@shop.io"


@pytest.mark.parametrize("on_delete", ["remove", "forget"])
async def test_contact_deleted_in_kommo(world, on_delete):
    await world.map(MAPPING, on_contact_delete=on_delete)
    contact = world.contact()
    await run_lead(world, world.lead(QUALIFIED, [contact]))
    del world.kommo.store.account(ACCOUNT).contacts[contact]
    await run_contact(world, contact)
    status, segments = world.subscriber("jane@shop.io")
    assert segments == set()
    if on_delete == "forget":
        assert status is None or status in ("archived", "unsubscribed")
    else:
        assert status == active(world)


async def test_lead_deleted_contact_leaves_unless_another_lead_decides(world):
    await world.map(MAPPING)
    contact = world.contact()
    first = world.lead(QUALIFIED, [contact])
    await run_lead(world, first)
    del world.kommo.store.account(ACCOUNT).leads[first]
    await run_lead(world, first)
    assert world.subscriber("jane@shop.io")[1] == set()
    second = world.lead(WON, [contact])
    await run_lead(world, second)
    third = world.lead(PROPOSAL, [contact])
    del world.kommo.store.account(ACCOUNT).leads[second]
    await run_lead(world, second)  # the remaining lead decides
    assert third and world.subscriber("jane@shop.io")[1] == {"proposal"}


async def test_rerunning_a_job_sends_nothing_new(world):
    await world.map(MAPPING)
    lead = world.lead(QUALIFIED, [world.contact()])
    await run_lead(world, lead)
    sent = len(world.esp_requests())
    await run_lead(world, lead)
    assert len(world.esp_requests()) == sent


async def test_refused_address_is_recorded_once_and_not_retried(world):
    if world.kind != "mailchimp":
        pytest.skip("the fake-address refusal is Mailchimp's")
    await world.map(MAPPING)
    contact = world.contact(emails=["someone@example.com"])  # "looks fake" at Mailchimp
    lead = world.lead(QUALIFIED, [contact])
    await run_lead(world, lead)
    sent = len(world.esp_requests())
    await run_lead(world, lead)
    assert len(world.esp_requests()) == sent  # not retried while the contact is unchanged
    [failed] = await world.activity()
    assert (failed.outcome, failed.summary) == ("failed", "Mailchimp refused the address")
    assert "looks fake" in failed.detail
    assert "looks fake" in (await world.state(contact)).last_error


async def test_new_contact_segment_and_notes_on_sync(world):
    await world.map(MAPPING, new_contact_segment_id=world.segments["vip"], notes_on_sync=True)
    lead = world.lead(QUALIFIED, [world.contact()])
    await run_lead(world, lead)
    assert world.subscriber("jane@shop.io")[1] == {"qualified", "vip"}
    [note] = world.notes()
    assert note["entity_id"] == lead and note["note_type"] == "service_message"
    segments = "group “Qualified”, “Vip”" if world.kind == "mailerlite" else "tag “qualified”, “vip”"
    platform = "MailerLite" if world.kind == "mailerlite" else "Mailchimp"
    assert note["params"]["text"] == (
        f"mailsync → {platform}: jane@shop.io added to {segments} (stage Qualified).")


async def test_new_contact_without_leads_joins_the_welcome_segment(world):
    await world.map(MAPPING, new_contact_segment_id=world.segments["vip"])
    contact = world.contact()
    await run_contact(world, contact)
    assert world.subscriber("jane@shop.io") == (active(world), {"vip"})


async def test_all_lead_contacts(world):
    await world.map(MAPPING, all_lead_contacts=True)
    lead = world.lead(QUALIFIED, [world.contact(), world.contact("Bo", emails=["bo@shop.io"])])
    await run_lead(world, lead)
    assert world.subscriber("jane@shop.io")[1] == world.subscriber("bo@shop.io")[1] == {"qualified"}


async def test_stage_change_of_a_synced_contact_costs_at_most_three_calls(world):
    await world.map(MAPPING)
    lead = world.lead(QUALIFIED, [world.contact()])
    await run_lead(world, lead)
    world.router.requests.clear()
    world.move(lead, PROPOSAL)
    await run_lead(world, lead)
    calls = [f"{r.method} {r.url.path}" for r in world.router.requests]
    assert len(calls) <= 3, calls
    assert world.subscriber("jane@shop.io")[1] == {"proposal"}



def upsert_body(world):
    """The one subscriber write of a first sync, as the ESP received it."""
    path = "/api/subscribers" if world.kind == "mailerlite" else None
    [body] = [json.loads(r.content) for r in world.esp_requests()
              if (r.method, r.url.path) == ("POST", path) or (path is None and r.method == "PUT")]
    return body


async def test_company_is_sent_and_costs_no_call_on_a_stage_change(world):
    await world.map(MAPPING)
    company = world.kommo.store.add_contact(ACCOUNT, "Acme Corp", kind="company").id
    contact = world.contact(company_id=company)
    lead = world.lead(QUALIFIED, [contact])
    await run_lead(world, lead)
    ids = {"kommo_contact_id": str(contact), "kommo_lead_id": str(lead)}
    if world.kind == "mailerlite":
        assert upsert_body(world) == {
            "email": "jane@shop.io", "groups": [world.segments["qualified"]],
            "fields": {"name": "Jane", "last_name": "Doe", "company": "Acme Corp", **ids}}
    else:
        assert upsert_body(world) == {
            "email_address": "jane@shop.io", "status_if_new": "subscribed",
            "merge_fields": {"FNAME": "Jane", "LNAME": "Doe", "COMPANY": "Acme Corp",
                             "KOMMOCID": ids["kommo_contact_id"], "KOMMOLID": ids["kommo_lead_id"]}}
    assert [r.url.path for r in world.kommo_requests()].count("/api/v4/companies") == 1
    world.router.requests.clear()
    world.move(lead, PROPOSAL)
    await run_lead(world, lead)
    assert "/api/v4/companies" not in [r.url.path for r in world.kommo_requests()]
    assert len(world.router.requests) <= 3

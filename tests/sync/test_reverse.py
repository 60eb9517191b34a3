"""ESP → Kommo: opt-outs become one note per lead and the `email-opt-out` tag, exactly once."""

import contextlib

from backend.providers.base import EspEvent
from backend.sync import reconcile, reverse
from tests.sync.world import ACCOUNT, LOST, QUALIFIED, WON

MAPPING = {QUALIFIED: "qualified", WON: "won"}


def event(world, email="jane@shop.io", key="evt-1", kind="unsubscribed", new_email=None):
    return EspEvent.from_payload({
        "source": world.kind, "kind": kind, "email": email, "new_email": new_email,
        "subscriber_id": "1", "occurred_at": "2026-03-26T21:40:57+00:00", "reason": "manual",
        "raw_type": kind, "dedupe_key": key})


async def test_unsubscribe_three_deliveries_one_note_per_lead_and_the_tag(world):
    await world.map(MAPPING)
    contact = world.contact()
    store = world.kommo.store
    store.contact(ACCOUNT, contact).tags = [store.tag(store.account(ACCOUNT), {"name": "customer"})]
    first, second = world.lead(QUALIFIED, [contact]), world.lead(WON, [contact])
    assert await world.deliver_opt_out("jane@shop.io", times=3) == [200, 200, 200]
    await world.drain()
    notes = world.notes()
    assert sorted(n["entity_id"] for n in notes) == sorted([first, second])
    platform = "MailerLite" if world.kind == "mailerlite" else "Mailchimp"
    assert {n["note_type"] for n in notes} == {"service_message"}
    assert notes[0]["params"]["text"].startswith(f"jane@shop.io unsubscribed at {platform}")
    tags = [t["name"] for t in world.kommo.store.contact(ACCOUNT, contact).tags]
    assert tags == ["customer", "email-opt-out"]
    assert (await world.state(contact)).esp_status == "unsubscribed"
    [done] = [a for a in await world.activity() if a.direction == "to_kommo"]
    assert done.outcome == "ok" and "noted on 2 lead(s)" in done.summary


async def test_a_retried_job_adds_no_second_note(world):
    await world.map(MAPPING)
    contact = world.contact()
    world.lead(QUALIFIED, [contact])
    for _ in range(2):
        await reverse.apply_esp_event(world.resources, ACCOUNT, event(world))
    assert len(world.notes()) == 1


async def test_known_contacts_are_found_without_a_search(world):
    await world.map(MAPPING)
    contact = world.contact()
    lead = world.lead(QUALIFIED, [contact])
    from backend.sync import reconcile

    await reconcile.reconcile_lead(world.resources, ACCOUNT, lead)
    world.router.requests.clear()
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(world))
    queries = [r.url.params.get("query") for r in world.kommo_requests()]
    # contacts by id (with their tags and leads), the notes, the tag write
    assert [f"{r.method} {r.url.path}" for r in world.kommo_requests()] == [
        "GET /api/v4/contacts", "POST /api/v4/leads/notes", f"PATCH /api/v4/contacts/{contact}"]
    assert queries == [None, None, None]


async def test_address_nobody_has_is_recorded_as_skipped(world):
    await world.map(MAPPING)
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(world, email="ghost@shop.io"))
    assert world.notes() == []
    [skipped] = await world.activity()
    assert skipped.outcome == "skipped" and "no Kommo contact has this address" in skipped.summary


async def test_after_an_address_change_the_old_address_is_not_recreated(world):
    await world.map(MAPPING)
    contact = world.contact()
    lead = world.lead(QUALIFIED, [contact])
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(
        world, kind="email_changed", new_email="jane@elsewhere.io"))
    from backend.sync import reconcile

    await reconcile.reconcile_lead(world.resources, ACCOUNT, lead)
    assert world.subscriber("jane@shop.io") == (None, set())
    assert (await world.activity())[-1].summary.startswith("skipped: the address was changed")


async def test_our_own_stage_unsubscribe_is_noted_as_ours_and_its_echo_adds_nothing(world):
    await world.map({**MAPPING, LOST: "unsubscribe"})
    contact = world.contact()
    lead = world.lead(QUALIFIED, [contact])
    await reconcile.reconcile_lead(world.resources, ACCOUNT, lead)
    world.move(lead, LOST)
    await reconcile.reconcile_lead(world.resources, ACCOUNT, lead)
    platform = "MailerLite" if world.kind == "mailerlite" else "Mailchimp"
    assert [n["params"]["text"] for n in world.notes()] == [
        f"mailsync unsubscribed jane@shop.io at {platform}: a mailsync rule unsubscribes leads in "
        "stage Closed - lost. The person did not unsubscribe themselves."]
    # MailerLite reports our own unsubscribe to its webhooks (Mailchimp's hooks leave API changes
    # out, so there an unsubscribe event is always the person's own).
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(world, key="echo"))
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(world, key="echo"))  # a retry
    notes = world.notes()
    tags = [t["name"] for t in world.kommo.store.contact(ACCOUNT, contact).tags]
    if world.kind == "mailerlite":
        assert len(notes) == 1 and tags == []
        [echo] = [a for a in await world.activity() if a.direction == "to_kommo"]
        assert echo.summary == "unsubscribed at MailerLite by a mailsync stage rule: no note"
    else:
        assert len(notes) == 2 and notes[1]["params"]["text"].startswith("jane@shop.io unsubscribed")
        assert tags == ["email-opt-out"]
    # a later unsubscribe (resubscribed, then out again) is the person's own: noted
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(world, key="later"))
    assert world.notes()[-1]["params"]["text"].startswith(f"jane@shop.io unsubscribed at {platform}")


async def test_a_job_killed_after_its_notes_went_out_adds_none_again(world, monkeypatch):
    await world.map(MAPPING)
    contact = world.contact()
    first, second = world.lead(QUALIFIED, [contact]), world.lead(WON, [contact])

    async def killed(*args):
        raise SystemExit("kill -9 between Kommo's answer and the receipt")

    monkeypatch.setattr(reverse, "_receipt", killed)
    with contextlib.suppress(SystemExit):
        await reverse.apply_esp_event(world.resources, ACCOUNT, event(world))
    monkeypatch.undo()
    world.kommo.store.account(ACCOUNT).notes.pop()  # and the second lead's note never made it
    await reverse.apply_esp_event(world.resources, ACCOUNT, event(world))  # the retried job
    assert sorted(n["entity_id"] for n in world.kommo.store.account(ACCOUNT).notes) == sorted([first, second])
    assert len(world.notes()) == 3  # two on the first run, the missing one on the retry
    reads = [r for r in world.router.requests if r.method == "GET" and r.url.path.endswith("/notes")]
    assert len(reads) == 1

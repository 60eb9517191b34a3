"""Kommo's event log read through the client: the documented response shapes
(tests/fixtures/kommo/api/events__*.json, from kommo-events-tasks.md §B.3), the query the sweep
sends, the defensive reading of what the docs leave UNVERIFIED, and paging against the simulated
Kommo through the account's budget."""

import json
from pathlib import Path

import pytest

from backend.kommo import events
from backend.kommo.client import KommoClient
from backend.kommo.events import Event
from backend.sandbox.kommo_store import EMAIL_FIELD
from tests.kommo.fixtures import ACME, seed_tokens

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kommo" / "api"
QUALIFIED, PROPOSAL = 67548607, 67548619


class Answering:
    """Stands in for a KommoClient: answers `_get` with one body and remembers the query."""

    def __init__(self, body):
        self.body, self.params = body, None

    async def _get(self, path, *, params=None):
        assert path == "/api/v4/events"
        self.params = params
        return self.body


def load(name):
    return json.loads((FIXTURES / name).read_text())


async def read(name):
    return await events.events_page(Answering(load(name)), event_types=["lead_added"],
                                    created_from=0, created_to=1)


async def test_events__lead_status_changed():
    page = await read("events__lead_status_changed.json")
    assert page.events == (Event(
        id="01pz58t6p04ymgsgfbmfyfy1mf", type="lead_status_changed", entity_type="lead",
        entity_id=1234567, created_at=1665064411,
        value_after=({"lead_status": {"id": 111, "pipeline_id": 123}},),
        value_before=({"lead_status": {"id": 222, "pipeline_id": 456}},)),)
    assert page.has_next is True
    [event] = page.events
    assert (event.lead_status(), event.entities()) == ((123, 111), [("lead", 1234567)])


async def test_events__lead_added():
    page = await read("events__lead_added.json")
    assert page.events == (Event(
        id="01pz5a0k3m7c9x2r4t6v8w0y1z", type="lead_added", entity_type="lead", entity_id=1234568,
        created_at=1665064500, value_after=({"note": {"id": 42424242}},), value_before=()),)
    assert page.has_next is False
    assert (page.events[0].lead_status(), page.events[0].entities()) == (None, [("lead", 1234568)])


async def test_events__email_changed():
    page = await read("events__email_changed.json")
    [event] = page.events
    assert (event.id, event.type, event.entity_type, event.entity_id, event.created_at) == (
        "01pz5b7q2w4e6r8t0y2u4i6o8p", "custom_field_771908_value_changed", "contact", 24870011,
        1665064600)
    assert event.type == events.field_changed_type(771908)
    assert event.value_after[0]["custom_field_value"]["text"] == "ann.lee@acme-corp.io"
    assert event.entities() == [("contact", 24870011)]


async def test_the_query_names_each_type_the_window_and_at_most_100_per_page():
    client = Answering(None)  # 204: nothing matched
    page = await events.events_page(client, event_types=["lead_added", "lead_status_changed"],
                                    created_from=1700000000, created_to=1700000360, page=3, limit=250)
    assert page == events.EventsPage(events=(), has_next=False)
    assert client.params == [("filter[type][]", "lead_added"), ("filter[type][]", "lead_status_changed"),
                             ("filter[created_at][from]", 1700000000),
                             ("filter[created_at][to]", 1700000360), ("page", 3), ("limit", 100)]


async def test_unreadable_items_are_skipped_and_numbers_may_be_strings():
    body = {"_embedded": {"events": [
        {"type": "lead_added", "created_at": 1},  # no id
        {"id": "a", "created_at": 1},  # no type
        {"id": "b", "type": "lead_added", "created_at": "soon"},  # no readable time
        {"id": 991, "type": "lead_deleted", "entity_type": "lead", "entity_id": "77",
         "created_at": "1700000001", "value_after": None, "value_before": {"x": 1}}]}}
    page = await events.events_page(Answering(body), event_types=["lead_deleted"], created_from=0,
                                    created_to=2)
    assert page.events == (Event(id="991", type="lead_deleted", entity_type="lead", entity_id=77,
                                 created_at=1700000001, value_after=(), value_before=({"x": 1},)),)
    assert page.has_next is False  # no `_links`, and fewer items than a page


def test_link_events_name_both_sides_in_any_nesting():
    linked = Event(id="1", type="entity_linked", entity_type="lead", entity_id=5, created_at=1,
                   value_after=({"link": {"entity": {"type": "contact", "id": 9}}},))
    unlinked = Event(id="2", type="contact_unlinked", entity_type="contact", entity_id=9, created_at=1,
                     value_before=({"entity_type": "leads", "entity_id": "5"},))
    company = Event(id="3", type="entity_linked", entity_type="company", entity_id=4, created_at=1,
                    value_after=({"link": {"entity": {"type": "company", "id": 8}}},))
    assert linked.entities() == [("lead", 5), ("contact", 9)]
    assert unlinked.entities() == [("contact", 9), ("lead", 5)]
    assert company.entities() == []


def test_stage_reads_only_a_complete_lead_status():
    def moved(value):
        return Event(id="1", type="lead_status_changed", entity_type="lead", entity_id=5,
                     created_at=1, value_after=value).lead_status()

    assert moved(({"lead_status": {"id": "142", "pipeline_id": "7"}},)) == (7, 142)
    assert moved(({"lead_status": {"id": 142}},)) is None
    assert moved(()) is None


def test_the_sweep_asks_for_the_email_fields_own_change_type():
    assert events.sweep_types(None) == (*events.LEAD_TYPES, *events.CONTACT_TYPES, *events.LINK_TYPES)
    assert events.sweep_types(771908)[-1] == "custom_field_771908_value_changed"


@pytest.fixture
async def client(kommo, kommo_resources):
    await seed_tokens(kommo_resources, kommo)
    return KommoClient(kommo_resources, ACME)


async def test_pages_of_the_simulated_log_through_the_budget(client, kommo):
    start = kommo.store.now()
    ann = kommo.store.add_contact(ACME, "Ann", emails=["ann@acme.io"])
    leads = [kommo.store.add_lead(ACME, status_id=QUALIFIED, contacts=[ann.id]).id for _ in range(120)]
    for lead_id in leads[:30]:
        kommo.store.move_lead(ACME, lead_id, PROPOSAL)
    read, page = [], 1
    while True:
        result = await events.events_page(client, event_types=events.sweep_types(EMAIL_FIELD),
                                          created_from=start, created_to=kommo.store.now(), page=page)
        read += result.events
        if not result.has_next:
            break
        page += 1
    assert page == 2 and len(read) == 151  # 1 contact, 120 leads added, 30 moved
    assert len({event.id for event in read}) == 151
    moves = sorted((e for e in read if e.type == "lead_status_changed"), key=lambda e: e.order)
    assert [e.entity_id for e in moves] == leads[:30]  # ids sort in the order of the changes
    assert {e.lead_status() for e in moves} == {(7654321, PROPOSAL)}
    assert [r.status for r in kommo.calls("/api/v4/events")] == [200, 200]


async def test_the_email_field_is_found_by_its_code(client):
    assert await events.email_field_id(client) == EMAIL_FIELD

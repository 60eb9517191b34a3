"""Which events read from Kommo's log still need a reconcile: only changes provably applied are
skipped (pure; the end-to-end sweeps are in test_catchup.py)."""

from backend.kommo.events import Event
from backend.models import ContactState
from backend.sync import catchup_plan
from backend.sync.catchup_plan import AMBIGUOUS, Known, latest_stage, plan
from backend.sync.mapping import Rule, StageMapping
from backend.sync.options import SyncOptions

P, A, B, C, D = 7, 11, 22, 33, 44  # pipeline; stages A (segment "a"), B ("b"), C (remove), D (unmapped)
MAPPING = StageMapping((Rule(P, A, "segment", "a"), Rule(P, B, "segment", "b"), Rule(P, C, "remove"),
                        Rule(P, 55, "unsubscribe")))
LEAD, CONTACT, T = 100, 200, 1_700_000_000
_ids = iter(range(1, 10_000))


def moved(into, out_of=A, at=T, lead=LEAD):
    return Event(id=str(next(_ids)), type="lead_status_changed", entity_type="lead", entity_id=lead,
                 created_at=at, value_after=({"lead_status": {"id": into, "pipeline_id": P}},),
                 value_before=({"lead_status": {"id": out_of, "pipeline_id": P}},))


def event(kind, entity="lead", entity_id=LEAD, at=T, **values):
    return Event(id=str(next(_ids)), type=kind, entity_type=entity, entity_id=entity_id, created_at=at,
                 **values)


def state(segments=("a",), updated=T, lead=LEAD, **fields):
    return ContactState(account_id=1, contact_id=CONTACT, lead_id=lead, lead_updated_at=updated,
                        segments=list(segments), email="jane@shop.io", **fields)


def known(*states, options=None, contacts=None):
    deciding = {}
    for s in states:
        deciding.setdefault(s.lead_id, []).append(s)
    return Known(MAPPING, options or SyncOptions(), deciding, contacts or {})


def needs(events, *states, **kwargs):
    return plan(events, known(*states, **kwargs)).leads == (LEAD,)


def test_a_move_already_written_is_skipped():
    assert not needs([event("lead_added"), moved(B)], state(["b"]))
    assert plan([moved(B)], known(state(["b"]))).skipped == 1


def test_a_move_not_written_yet_is_reconciled():
    assert needs([moved(B)], state(["a"]))  # the webhook was lost: still in the old segment
    assert needs([moved(B)], state(["b"], updated=T - 1))  # written from an older version
    assert needs([moved(B)])  # the lead decides nobody yet
    assert needs([moved(B)], state(["b"], last_error="refused"))
    assert needs([moved(B)], state(["b"]), options=SyncOptions(all_lead_contacts=True))


def test_remove_and_unsubscribe_rules_compare_what_they_prescribe():
    assert not needs([moved(C)], state([]))
    assert needs([moved(C)], state(["a"]))
    assert not needs([moved(55)], state(["a"], esp_status="unsubscribed"))
    assert needs([moved(55)], state(["a"], esp_status="active"))


def test_an_unmapped_stage_matters_only_to_the_contacts_the_lead_decides():
    assert not needs([moved(D)])
    assert needs([moved(D)], state(["a"]))  # the lead must let go of them


def test_moves_of_one_second_are_ordered_by_chaining_them():
    assert latest_stage([moved(C, out_of=B), moved(B, out_of=A)]) == (P, C)
    assert latest_stage([moved(B, out_of=A), moved(A, out_of=B)]) is AMBIGUOUS  # a round trip
    assert latest_stage([moved(B, at=T + 1), moved(C, out_of=B)]) == (P, B)  # the newer second
    unreadable = Event(id="x", type="lead_status_changed", entity_type="lead", entity_id=LEAD,
                       created_at=T)
    assert latest_stage([unreadable]) is AMBIGUOUS
    assert needs([moved(B, out_of=A), moved(A, out_of=B)], state(["a"]))


def test_deletions_restores_and_links():
    assert not needs([event("lead_deleted")])
    assert needs([event("lead_deleted")], state(["a"]))
    assert needs([event("lead_restored")], state(["a"]))
    linked = event("entity_linked", value_after=({"link": {"entity": {"type": "contact", "id": CONTACT}}},))
    result = plan([linked], known(state(["a"])))
    assert (result.leads, result.contacts) == ((LEAD,), (CONTACT,))


def test_contact_events():
    synced = ContactState(account_id=1, contact_id=CONTACT, email="jane@shop.io")

    def contacts(kind, *, options=None, stored=None):
        events = [event(kind, entity="contact", entity_id=CONTACT)]
        return plan(events, known(options=options, contacts=stored or {})).contacts

    welcome = SyncOptions(new_contact_segment_id="new")
    assert contacts("contact_added") == ()  # it matters through its lead's events
    assert contacts("contact_added", options=welcome) == (CONTACT,)
    assert contacts("contact_deleted") == ()  # never written: nothing to remove
    assert contacts("contact_deleted", stored={CONTACT: synced}) == (CONTACT,)
    assert contacts("custom_field_771908_value_changed") == (CONTACT,)
    assert contacts("contact_restored") == (CONTACT,)
    assert catchup_plan.by_entity([event("company_added", entity="company")]) == ({}, {})

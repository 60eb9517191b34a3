"""Which changes read from Kommo's event log still need a reconcile (pure; `catchup.py` reads and
writes around it).

Most events were already delivered as webhooks and reconciled; re-reconciling them is harmless
(level-triggered, and jobs coalesce) but costs Kommo reads. A lead is skipped only when what we
stored proves its reconcile already saw this change and wrote its outcome:
- every contact the lead decides was written from a version of the lead at least as new as each
  of its events (`lead_updated_at` is Kommo's own clock, as the event's `created_at` is), and
- those contacts hold exactly the segments the rule of the lead's latest stage prescribes (two
  moves within one second would pass the first test with the older stage; they fail this one
  unless both stages lead to the same segments, when nothing is left to do anyway).
Anything unclear (stage events of one second that do not chain, a restore, a link, an email
change) is reconciled. Contact events are skipped only where the reconcile would provably do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from backend.kommo.events import Event
from backend.models import ContactState
from backend.providers.base import OPTED_OUT, EspStatus
from backend.sync.mapping import Rule, StageMapping
from backend.sync.options import SyncOptions

SKIPPABLE_LEAD_TYPES = frozenset({"lead_added", "lead_status_changed", "lead_deleted"})
AMBIGUOUS = (-1, -1)  # the latest stage cannot be told


@dataclass(frozen=True)
class Known:
    """What we last wrote for the entities the events name."""

    mapping: StageMapping
    options: SyncOptions
    deciding: dict[int, list[ContactState]] = field(default_factory=dict)  # lead id → states
    contacts: dict[int, ContactState] = field(default_factory=dict)  # contact id → state


@dataclass(frozen=True)
class Plan:
    leads: tuple[int, ...]
    contacts: tuple[int, ...]
    skipped: int  # leads and contacts whose change was already applied


def by_entity(events: Iterable[Event]) -> tuple[dict[int, list[Event]], dict[int, list[Event]]]:
    """(lead id → its events, contact id → its events); other entities are not synced."""
    leads: dict[int, list[Event]] = {}
    contacts: dict[int, list[Event]] = {}
    for event in events:
        for kind, entity_id in event.entities():
            (leads if kind == "lead" else contacts).setdefault(entity_id, []).append(event)
    return leads, contacts


def plan(events: Sequence[Event], known: Known) -> Plan:
    leads, contacts = by_entity(events)
    lead_ids = tuple(sorted(i for i, evs in leads.items() if lead_needs(i, evs, known)))
    contact_ids = tuple(sorted(i for i, evs in contacts.items() if contact_needs(i, evs, known)))
    return Plan(lead_ids, contact_ids, len(leads) + len(contacts) - len(lead_ids) - len(contact_ids))


def lead_needs(lead_id: int, events: Sequence[Event], known: Known) -> bool:
    deciding = known.deciding.get(lead_id, [])
    kinds = {event.type for event in events}
    if kinds - SKIPPABLE_LEAD_TYPES:
        return True
    if "lead_deleted" in kinds:
        return bool(deciding)  # a deleted lead's reconcile only releases the contacts it decides
    latest = latest_stage(events)
    if latest is AMBIGUOUS:
        return True
    rule = known.mapping.rule_for(*latest) if latest is not None else None
    if latest is not None and rule is None:
        return bool(deciding)  # an unmapped stage changes nothing, beyond releasing those contacts
    if not deciding or known.options.all_lead_contacts:
        return True  # not yet written, or contacts we hold no state for may be concerned
    if any(state.last_error or (state.lead_updated_at or 0) < event.created_at
           for state in deciding for event in events):
        return True
    return rule is not None and not all(applied(state, rule, known.mapping) for state in deciding)


def latest_stage(events: Sequence[Event]) -> tuple[int, int] | None:
    """(pipeline, stage) of the newest stage event; AMBIGUOUS when it cannot be told. Events of
    one second are ordered by chaining them (one's stage after is the next one's stage before):
    the order of their ids is not documented."""
    moves = [event for event in events if event.type == "lead_status_changed"]
    if not moves:
        return None
    newest = max(event.created_at for event in moves)
    last = [event for event in moves if event.created_at == newest]
    left = {event.lead_status(before=True) for event in last}
    ends = [event for event in last if len(last) == 1 or event.lead_status() not in left]
    stage = ends[0].lead_status() if len(ends) == 1 else None
    return AMBIGUOUS if stage is None else stage


def applied(state: ContactState, rule: Rule, mapping: StageMapping) -> bool:
    """The contact's stored segments are what the rule prescribes (`desired.segment_change`)."""
    if rule.action == "unsubscribe":
        return state.esp_status is not None and EspStatus.parse(state.esp_status) in OPTED_OUT
    want = {rule.segment_id} if rule.action == "segment" and rule.segment_id else set()
    return set(state.segments) & mapping.managed_segments == want


def contact_needs(contact_id: int, events: Sequence[Event], known: Known) -> bool:
    state = known.contacts.get(contact_id)
    for event in events:
        if event.type == "contact_added":
            # A new contact matters through its lead (a lead event), or for the welcome segment.
            if known.options.new_contact_segment_id and (state is None or state.last_synced_at is None):
                return True
        elif event.type == "contact_deleted":
            if state is not None and state.email:
                return True
        else:  # restored, linked or unlinked, its email changed
            return True
    return False

"""The simulated Kommo's event log (`GET /api/v4/events`, kommo-events-tasks.md §B): what the store
records when a lead is added, moved, deleted or restored, a contact is added, deleted or gets a
new email, or a contact is linked to or unlinked from a lead, and the list endpoint with the
filters mailsync uses.

Where the docs leave a behaviour UNVERIFIED, the sandbox picks the harder one for a client:
items come newest first, a `limit` above 100 yields 50 items (what real clients observed), and
an empty result is 204. Link and custom-field values use the shapes public code reads
(`{"link": {"entity": {…}}}`, `{"custom_field_value": {…}}`), themselves UNVERIFIED.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.sandbox.kommo_store import Contact, KommoStore, Lead

MAX_LIMIT = 100
OVER_LIMIT_ANSWER = 50
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class BadFilter(ValueError):
    """A query Kommo refuses with 400 (the app turns it into problem+json)."""


@dataclass
class LoggedEvent:
    number: int  # the id as a number: its text (`id`) is made only when the event is read
    type: str
    entity_type: str
    entity_id: int
    created_at: int
    account_id: int
    value_after: list[dict[str, Any]] = field(default_factory=list)
    value_before: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        """ULID-like, as Kommo's: 26 lowercase base-32 characters, in the order of recording."""
        return "".join(_CROCKFORD[(self.number >> shift) & 31] for shift in range(125, -1, -5))

    def to_json(self, host: str, created_by: int) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "entity_id": self.entity_id,
                "entity_type": self.entity_type, "created_by": created_by, "created_at": self.created_at,
                "value_after": self.value_after, "value_before": self.value_before,
                "account_id": self.account_id,
                "_links": {"self": {"href": f"https://{host}/api/v4/events/{self.id}"}},
                "_embedded": {"entity": {"id": self.entity_id}}}


class EventLog:
    """Each account's events, in the order they happened."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.by_account: dict[int, list[LoggedEvent]] = {}
        self._serial = itertools.count()
        self._notes = itertools.count(91000000)

    def record(self, account_id: int, kind: str, entity_type: str, entity_id: int, *,
               after: list[dict[str, Any]] | None = None,
               before: list[dict[str, Any]] | None = None) -> LoggedEvent:
        now = self.clock()
        # Time first, then a serial: ids sort in the order the events were recorded.
        event = LoggedEvent(number=(int(now * 1000) << 80) | next(self._serial), type=kind,
                            entity_type=entity_type, entity_id=entity_id, created_at=int(now),
                            account_id=account_id, value_after=after or [], value_before=before or [])
        self.by_account.setdefault(account_id, []).append(event)
        return event

    def of(self, account_id: int) -> list[LoggedEvent]:
        return self.by_account.get(account_id, [])

    def note_value(self) -> list[dict[str, Any]]:
        """What creation events carry: the system note Kommo adds (per public code reading them)."""
        return [{"note": {"id": next(self._notes)}}]


# --- what the store records ---------------------------------------------------------------------


def status_value(pipeline_id: int, status_id: int) -> list[dict[str, Any]]:
    return [{"lead_status": {"id": status_id, "pipeline_id": pipeline_id}}]


def link_value(entity_type: str, entity_id: int) -> list[dict[str, Any]]:
    return [{"link": {"entity": {"type": entity_type, "id": entity_id}}}]


def email_value(field_id: int, emails: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"custom_field_value": {"field_id": field_id, "field_type": 8, "enum_id": None,
                                    "text": value}} for value, _kind in emails]


# --- edits that exist only to leave an event (and a webhook, sent by the caller) --------------------


def delete_lead(store: KommoStore, account_id: int, lead_id: int) -> Lead:
    lead = store.account(account_id).leads.pop(store.lead(account_id, lead_id).id)
    store.events.record(account_id, "lead_deleted", "lead", lead.id)
    return lead


def set_emails(store: KommoStore, account_id: int, contact_id: int, emails: list[tuple[str, str]],
               field_id: int) -> Contact:
    """A user edits the contact's EMAIL field: one event of that field's own type."""
    contact = store.contact(account_id, contact_id)
    before, contact.emails, contact.updated_at = contact.emails, list(emails), store.now()
    store.events.record(account_id, f"custom_field_{field_id}_value_changed", "contact", contact.id,
                        after=email_value(field_id, contact.emails),
                        before=email_value(field_id, before))
    return contact


def link(store: KommoStore, account_id: int, lead_id: int, contact_id: int, *,
         linked: bool = True) -> Lead:
    """Link a contact to the lead (as its main contact when it is the first one), or unlink it."""
    lead, contact = store.lead(account_id, lead_id), store.contact(account_id, contact_id)
    kept = [(cid, main) for cid, main in lead.contacts if cid != contact.id]
    if not linked and kept and not any(main for _, main in kept):
        kept[0] = (kept[0][0], True)  # the main contact left: the next one becomes main
    lead.contacts = [*kept, (contact.id, not kept)] if linked else kept
    lead.updated_at = store.now()
    value = link_value("contact", contact.id)
    store.events.record(account_id, "entity_linked" if linked else "entity_unlinked", "lead", lead.id,
                        after=value if linked else [], before=[] if linked else value)
    return lead


# --- GET /api/v4/events -------------------------------------------------------------------------


def events_list(log: EventLog, account_id: int, host: str, query: list[tuple[str, str]], *,
                created_by: int) -> dict[str, Any] | None:
    params = dict(query)
    wanted_types = _listed(query, "filter[type]")
    entities = _listed(query, "filter[entity]")
    ids = {int(v) for v in _listed(query, "filter[entity_id]") if v.isdigit()}
    if ids and len(entities) != 1:
        raise BadFilter("filter[entity_id] needs exactly one filter[entity]")
    since, until = _created_range(query)
    found = [e for e in reversed(log.of(account_id))  # newest first
             if (not wanted_types or e.type in wanted_types)
             and (not entities or e.entity_type in entities) and (not ids or e.entity_id in ids)
             and since <= e.created_at <= until]
    page, limit = _page(params)
    chunk = found[(page - 1) * limit: page * limit]
    if not chunk:
        return None
    base = f"https://{host}/api/v4/events"
    links = {"self": {"href": f"{base}?page={page}&limit={limit}"}}
    if page * limit < len(found):
        links["next"] = {"href": f"{base}?page={page + 1}&limit={limit}"}
    return {"_page": page, "_links": links,
            "_embedded": {"events": [e.to_json(host, created_by) for e in chunk]}}


def _listed(query: list[tuple[str, str]], name: str) -> set[str]:
    """`name[]=a&name[]=b`, `name[0]=a`, or `name=a,b`: the forms Kommo accepts."""
    values: set[str] = set()
    for key, value in query:
        suffix = key[len(name):] if key.startswith(name) else None
        if suffix in ("", "[]") or (suffix and suffix[0] == "[" and suffix[1:-1].isdigit()
                                    and suffix[-1] == "]"):
            values |= {part.strip() for part in value.split(",") if part.strip()}
    return values


def _created_range(query: list[tuple[str, str]]) -> tuple[int, int]:
    """`filter[created_at][from|to]`, or `filter[created_at]=from[,to]` (one value: "after it")."""
    params = dict(query)
    try:
        if "filter[created_at]" in params:
            parts = [int(p) for p in params["filter[created_at]"].split(",") if p.strip()]
            return (parts[0], parts[1]) if len(parts) > 1 else (parts[0] + 1, 2**62)
        return (int(params.get("filter[created_at][from]", 0)),
                int(params.get("filter[created_at][to]", 2**62)))
    except (ValueError, IndexError):
        raise BadFilter("filter[created_at] must be Unix timestamps") from None


def _page(params: dict[str, str]) -> tuple[int, int]:
    try:
        page, limit = int(params.get("page", 1)), int(params.get("limit", 50))
    except ValueError:
        raise BadFilter("page and limit must be numbers") from None
    if limit > MAX_LIMIT:
        limit = OVER_LIMIT_ANSWER  # what real clients asking for 250 got back
    return max(page, 1), max(limit, 1)

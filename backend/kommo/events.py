"""Kommo's event log, `GET /api/v4/events` (docs: kommo-events-tasks.md §B), for the catch-up sweep.

Kommo drops some webhook deliveries and never resends them; its event log still records the
change. These functions read it through a `KommoClient` (so every call waits on the account's
budget and refreshes an expired token like any other) and turn its items into `Event`s.

What the docs leave UNVERIFIED is read defensively: ids may be strings or numbers, the order of
the items is unknown (callers sort by `created_at`), a `limit` above 100 may silently shrink to
50 (so 100 is sent), value shapes other than `lead_status` are not relied upon, and an item that
cannot be read is skipped rather than failing the page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.kommo import types

if TYPE_CHECKING:
    from backend.kommo.client import KommoClient

log = logging.getLogger("mailsync.kommo.events")

PAGE_LIMIT = 100  # amoCRM's documented maximum; clients sending 250 got 50 back
LEAD_TYPES = ("lead_added", "lead_deleted", "lead_restored", "lead_status_changed")
CONTACT_TYPES = ("contact_added", "contact_deleted", "contact_restored")
# Which of these Kommo writes for "contact linked to a lead", and on which side, is not
# documented: all are asked for, and both the event's entity and any entity named in its
# values are reconciled.
LINK_TYPES = ("entity_linked", "entity_unlinked", "lead_linked", "lead_unlinked",
              "contact_linked", "contact_unlinked")
ENTITIES = {"lead": "lead", "leads": "lead", "contact": "contact", "contacts": "contact"}


def field_changed_type(field_id: int) -> str:
    """The event type of one custom field's value changing (the id is part of the key)."""
    return f"custom_field_{int(field_id)}_value_changed"


def sweep_types(email_field_id: int | None) -> tuple[str, ...]:
    """Every event type whose change can move an address between segments."""
    email = (field_changed_type(email_field_id),) if email_field_id else ()
    return (*LEAD_TYPES, *CONTACT_TYPES, *LINK_TYPES, *email)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    entity_type: str  # singular, as Kommo writes it: lead, contact, company, …
    entity_id: int | None
    created_at: int  # Unix seconds
    value_after: tuple[Any, ...] = ()
    value_before: tuple[Any, ...] = ()

    @property
    def order(self) -> tuple[int, str]:
        return self.created_at, self.id

    def lead_status(self, *, before: bool = False) -> tuple[int, int] | None:
        """(pipeline id, status id) the lead moved into (or out of); None when unreadable."""
        for value in self.value_before if before else self.value_after:
            status = value.get("lead_status") if isinstance(value, dict) else None
            if isinstance(status, dict):
                pipeline_id = types.as_int(status.get("pipeline_id"))
                status_id = types.as_int(status.get("id"))
                if pipeline_id is not None and status_id is not None:
                    return pipeline_id, status_id
        return None

    def entities(self) -> list[tuple[str, int]]:
        """(lead|contact, id) this event concerns: its own entity, and for links the other side
        wherever the values name it (UNVERIFIED shapes, e.g. `{"link": {"entity": {…}}}`)."""
        found: list[tuple[str, int]] = []
        kind = ENTITIES.get(self.entity_type)
        if kind is not None and self.entity_id is not None:
            found.append((kind, self.entity_id))
        if self.type in LINK_TYPES:
            for value in (*self.value_after, *self.value_before):
                found += [e for e in _named_entities(value) if e not in found]
        return found


@dataclass(frozen=True)
class EventsPage:
    events: tuple[Event, ...]
    has_next: bool


async def events_page(client: KommoClient, *, event_types: Sequence[str], created_from: int,
                      created_to: int, page: int = 1, limit: int = PAGE_LIMIT) -> EventsPage:
    """One page of events of `event_types` created in [created_from, created_to] (Unix seconds).
    Kommo answers 204 when nothing matches: an empty last page."""
    params: list[tuple[str, str | int]] = [("filter[type][]", t) for t in event_types]
    params += [("filter[created_at][from]", int(created_from)), ("filter[created_at][to]", int(created_to)),
               ("page", page), ("limit", min(int(limit), PAGE_LIMIT))]
    # The client has no public generic read; its transport is what gives the budget and the
    # token refresh, so the events read goes through it.
    body = await client._get("/api/v4/events", params=params)
    items = types.embedded(body, "events")
    events = tuple(event for item in items if (event := parse_event(item)) is not None)
    return EventsPage(events=events, has_next=_has_next(body, len(items), limit))


def parse_event(item: dict[str, Any]) -> Event | None:
    """An `_embedded.events[]` item; None (logged) when it lacks an id, a type or a time."""
    event_id, created_at = item.get("id"), types.as_int(item.get("created_at"))
    kind = item.get("type")
    if event_id in (None, "") or not isinstance(kind, str) or created_at is None:
        log.warning("skipped a Kommo event that cannot be read", extra={"event_keys": sorted(item)})
        return None
    return Event(id=str(event_id), type=kind, entity_type=str(item.get("entity_type") or ""),
                 entity_id=types.as_int(item.get("entity_id")), created_at=created_at,
                 value_after=_values(item.get("value_after")),
                 value_before=_values(item.get("value_before")))


async def email_field_id(client: KommoClient) -> int | None:
    """The id of the contacts' EMAIL field (its change events carry the id in their type)."""
    for field in await client.custom_fields("contacts"):
        if (field.code or "").upper() == "EMAIL":
            return field.id
    return None


def _values(value: Any) -> tuple[Any, ...]:
    if isinstance(value, list):
        return tuple(value)
    return (value,) if isinstance(value, dict) else ()


def _named_entities(value: Any) -> Iterator[tuple[str, int]]:
    """Every `{"type"|"entity_type": lead|contact, "id"|"entity_id": n}` nested in a value."""
    if isinstance(value, dict):
        kind = ENTITIES.get(str(value.get("type") or value.get("entity_type") or ""))
        entity_id = types.as_int(value.get("id", value.get("entity_id")))
        if kind is not None and entity_id is not None:
            yield kind, entity_id
        for child in value.values():
            yield from _named_entities(child)
    elif isinstance(value, list):
        for child in value:
            yield from _named_entities(child)


def _has_next(body: Any, count: int, limit: int) -> bool:
    links = body.get("_links") if isinstance(body, dict) else None
    if isinstance(links, dict):
        return "next" in links
    # Without `_links` (UNVERIFIED shape), a full page may have a successor.
    return count >= min(limit, PAGE_LIMIT)

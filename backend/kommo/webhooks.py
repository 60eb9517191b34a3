"""Kommo webhook bodies (form-encoded, bracketed keys) → typed events. Pure functions, no I/O.

Kommo's documented wire format: `{entity}[{action}][{n}][field]=value`, every value a string,
several items per body, an `account[...]` block. Company events arrive under `contacts` with
`type=company`. Event keys we do not subscribe to are listed in `ignored_keys`, never guessed at.
Ids and timestamps must be whole numbers of at most 18 digits, ids above zero: anything else
(a minus sign, Arabic-Indic digits, letters) is a 400, never an id we would ask Kommo about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from backend.errors import MalformedBody
from backend.formdata import parse_form

_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")

# Wire keys of the subscriptions made at install (docs/ARCHITECTURE.md §3).
SUBSCRIBED: dict[str, frozenset[str]] = {
    "leads": frozenset({"add", "update", "status", "delete"}),
    "contacts": frozenset({"add", "update", "delete"}),
}
WEBHOOK_SETTINGS = ("add_lead", "update_lead", "status_lead", "delete_lead",
                    "add_contact", "update_contact", "delete_contact")


@dataclass(frozen=True)
class KommoEvent:
    entity: str  # "lead" | "contact" | "company"
    action: str  # the wire key's action: "add", "update", "status", "delete"
    id: int
    last_modified: int | None
    pipeline_id: int | None
    status_id: int | None
    old_status_id: int | None
    data: dict  # the raw item, values as strings

    def summary(self) -> dict[str, Any]:
        """What the event says, without the raw item: what the inbox keeps of a delivery."""
        fields = {"entity": self.entity, "action": self.action, "id": self.id,
                  "last_modified": self.last_modified, "pipeline_id": self.pipeline_id,
                  "status_id": self.status_id, "old_status_id": self.old_status_id}
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class KommoWebhook:
    account_id: int
    subdomain: str | None
    events: tuple[KommoEvent, ...]
    ignored_keys: tuple[str, ...]


def parse_webhook(body: bytes | str) -> KommoWebhook:
    """Parse one delivery; `MalformedBody` when it is not a Kommo webhook we can read."""
    form = parse_form(body)
    events: list[KommoEvent] = []
    ignored: list[str] = []
    for key, value in form.items():
        if key == "account":
            continue
        if not isinstance(value, dict):
            ignored.append(key)
            continue
        for action, items in value.items():
            if action in SUBSCRIBED.get(key, ()):
                events.extend(_event(key, action, item) for item in _items(key, action, items))
            else:
                ignored.append(f"{key}[{action}]")
    account = form.get("account")
    account = account if isinstance(account, dict) else {}
    return KommoWebhook(account_id=_account_id(account, events), subdomain=_text(account.get("subdomain")),
                        events=tuple(events), ignored_keys=tuple(ignored))


def _items(entity: str, action: str, items: Any) -> list[dict]:
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise MalformedBody(f"{entity}[{action}] must hold numbered items")
    return items


def _event(key: str, action: str, item: dict) -> KommoEvent:
    entity = "lead" if key == "leads" else ("company" if item.get("type") == "company" else "contact")
    item_id = _int(item.get("id"), f"{key}[{action}][id]")
    if not item_id:
        raise MalformedBody(f"{key}[{action}] item without an id above zero")
    last_modified = _int(item.get("last_modified"), "last_modified")
    if last_modified is None:
        last_modified = _int(item.get("updated_at"), "updated_at")
    lead = entity == "lead"
    return KommoEvent(
        entity=entity, action=action, id=item_id, last_modified=last_modified,
        pipeline_id=_stage_id(item, "pipeline_id") if lead else None,
        status_id=_stage_id(item, "status_id") if lead else None,
        old_status_id=_stage_id(item, "old_status_id") if lead else None,
        data=item)


def _stage_id(item: dict, field: str) -> int | None:
    # Kommo sends 0 for "none" (e.g. old_status_id of a new lead).
    return _int(item.get(field), field) or None


def _account_id(account: dict, events: list[KommoEvent]) -> int:
    account_id = _int(account.get("id"), "account[id]")
    if account_id is None:
        ids = {_int(event.data.get("account_id"), "account_id") for event in events} - {None}
        if len(ids) != 1:
            raise MalformedBody("the webhook does not say which account it is for")
        account_id = ids.pop()
    if account_id == 0:
        raise MalformedBody("account[id] must be above zero")
    return account_id


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _WHOLE_NUMBER.fullmatch(value):
        raise MalformedBody(f"{name} must be a whole number")
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- contact fields in webhook items ----------------------------------------------------------


def custom_field_values(data: dict, code: str) -> list[str]:
    """Values of the item's custom field with this `code` (EMAIL, PHONE), in order, non-empty.

    Webhooks carry the account's numeric `enum` id, not WORK/PRIV: the email kind is only known
    from the API (`enum_code`), so a choice by kind must re-read the contact there."""
    fields = data.get("custom_fields")
    values: list[str] = []
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict) or str(field.get("code", "")).upper() != code:
            continue
        entries = field.get("values")
        for entry in entries if isinstance(entries, list) else []:
            value = entry.get("value") if isinstance(entry, dict) else entry
            if isinstance(value, str) and value.strip():
                values.append(value.strip())
    return values


def contact_emails(data: dict) -> list[str]:
    return custom_field_values(data, "EMAIL")


def contact_phones(data: dict) -> list[str]:
    return custom_field_values(data, "PHONE")


def linked_lead_ids(data: dict) -> list[int]:
    """`linked_leads_id[{lead_id}][ID]`: the lead ids of a contact item (form parsing turns the
    numeric keys into a list, so the id is read from each entry's `ID`)."""
    linked = data.get("linked_leads_id")
    entries = linked.values() if isinstance(linked, dict) else linked if isinstance(linked, list) else []
    ids = []
    for entry in entries:
        value = entry.get("ID") if isinstance(entry, dict) else entry
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value):
            ids.append(int(value))
    return ids

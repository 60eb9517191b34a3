"""What a contact should look like at the ESP, computed from Kommo's truth. Pure functions.

docs/ARCHITECTURE.md §7: the email chosen by `email_choice`; consent from `consent_field_id`; fields
(first/last name, phone, company, `kommo_contact_id`, `kommo_lead_id`, `field_map`); the segment mapped
to the deciding lead's stage among the managed segments.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from backend.kommo import types
from backend.providers.base import Consent
from backend.sync.mapping import Rule
from backend.sync.options import FieldMapEntry, SyncOptions

# RFC 5322 is broader; this is what the ESPs accept and what a person means by "an address".
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NO = {"", "0", "false", "no", "off", "nein", "não", "nao"}


@dataclass(frozen=True)
class ContactPlan:
    """Kommo's side of one contact, ready to compare with what we last wrote."""

    contact_id: int
    email: str | None
    skip_reason: str | None  # "no email", "invalid email", "no consent": nothing is sent
    consent: Consent
    fields: Mapping[str, str | None] = field(default_factory=dict)
    known_hash: str | None = None  # a plan rebuilt from stored state keeps the stored hash

    @property
    def fields_hash(self) -> str:
        if self.known_hash is not None:
            return self.known_hash
        data = json.dumps([self.email, str(self.consent), sorted(self.fields.items())])
        return hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class SegmentChange:
    add: tuple[str, ...]
    remove: tuple[str, ...]
    unsubscribe: bool = False

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.unsubscribe)


def choose_email(contact: types.Contact, choice: str) -> str | None:
    """`first`: the first address; `WORK`/`PRIV`: the first of that kind, else the first."""
    emails = list(contact.emails)
    if choice in ("WORK", "PRIV"):
        emails.sort(key=lambda v: (v.enum_code or "").upper() != choice)
    return str(emails[0].value).strip().lower() if emails else None


def has_consent(contact: types.Contact, field_id: int) -> bool:
    """A checkbox field is on, or a text/select field holds anything but a "no"."""
    found = contact.field(field_id)
    if found is None:
        return False
    for value in found.values:
        raw = value.value
        if isinstance(raw, bool):
            if raw:
                return True
        elif raw is not None and str(raw).strip().lower() not in _NO:
            return True
    return False


def plan_contact(contact: types.Contact, lead_id: int | None, options: SyncOptions,
                 company: str | None = None) -> ContactPlan:
    email = choose_email(contact, options.email_choice)
    consent = Consent.SUBSCRIBED
    skip = None
    if email is None:
        skip = "no email"
    elif not _EMAIL.match(email):
        skip = "invalid email"
    elif options.consent_field_id is not None and not has_consent(contact, options.consent_field_id):
        if options.no_consent == "skip":
            skip = "no consent"
        else:
            consent = Consent.PENDING
    return ContactPlan(contact_id=contact.id, email=email, skip_reason=skip, consent=consent,
                       fields=contact_fields(contact, lead_id, options.field_map, company))


def contact_fields(contact: types.Contact, lead_id: int | None,
                   field_map: Iterable[FieldMapEntry], company: str | None = None
                   ) -> dict[str, str | None]:
    first, last = _names(contact)
    phones = [str(v.value).strip() for v in contact.phones if v.value]
    fields: dict[str, str | None] = {
        "first_name": first, "last_name": last, "phone": phones[0] if phones else None,
        "company": company,
        "kommo_contact_id": str(contact.id),
        "kommo_lead_id": str(lead_id) if lead_id is not None else None,
    }
    for entry in field_map:
        found = contact.field(entry.kommo_field_id)
        values = [str(v.value) for v in found.values if v.value not in (None, "")] if found else []
        fields[entry.esp_field] = ", ".join(values) or None
    return fields


def _names(contact: types.Contact) -> tuple[str | None, str | None]:
    if contact.first_name or contact.last_name:
        return contact.first_name or None, contact.last_name or None
    parts = contact.name.split(maxsplit=1)
    return (parts[0] if parts else None), (parts[1] if len(parts) > 1 else None)


def segment_change(rule: Rule, managed: frozenset[str], current: Iterable[str]) -> SegmentChange:
    """Exactly the mapped segment among the managed ones; `remove`: none of them;
    `unsubscribe`: the status changes, the segments do not."""
    have = set(current) & managed
    if rule.action == "unsubscribe":
        return SegmentChange(add=(), remove=(), unsubscribe=True)
    want = {rule.segment_id} if rule.action == "segment" and rule.segment_id else set()
    return SegmentChange(add=tuple(sorted(want - have)), remove=tuple(sorted(have - want)))

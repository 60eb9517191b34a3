"""The admin's sync options (docs/ARCHITECTURE.md §3 `options`), typed: parsed and validated once where
they come in (`SyncOptions.parse`, for the mapping route), read back from storage with
`from_stored`, and passed as this frozen object everywhere else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from backend.errors import Unprocessable

EMAIL_CHOICES = ("first", "WORK", "PRIV")
NO_CONSENT = ("skip", "pending")
ON_CONTACT_DELETE = ("remove", "forget")


def invalid(message: str) -> Unprocessable:
    return Unprocessable(message, code="invalid_mapping")


@dataclass(frozen=True)
class FieldMapEntry:
    """A Kommo contact field copied to the ESP under the vendor's own key / merge tag."""

    kommo_field_id: int
    esp_field: str


@dataclass(frozen=True)
class SyncOptions:
    consent_field_id: int | None = None
    no_consent: str = "skip"  # "skip" the contact, or add it "pending" (double opt-in)
    new_contact_segment_id: str | None = None
    notes_on_sync: bool = False
    email_choice: str = "first"  # or the first address of kind WORK / PRIV
    all_lead_contacts: bool = False
    field_map: tuple[FieldMapEntry, ...] = ()
    on_contact_delete: str = "remove"  # or "forget" (GDPR delete at the ESP)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def parse(cls, raw: Any, segment_ids: Iterable[str] | None = None) -> SyncOptions:
        """From the admin's JSON: known options only, each checked; what is missing takes its
        default. `segment_ids`, when given, are the segments that exist at the ESP."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise invalid("options must be an object")
        unknown = sorted(set(raw) - cls.names())
        if unknown:
            raise invalid(f"unknown option(s): {', '.join(unknown)}")
        _check_choices(raw)
        segment = raw.get("new_contact_segment_id")
        segment = None if segment is None else str(segment)
        if segment is not None and segment_ids is not None and segment not in set(segment_ids):
            raise invalid(f"new_contact_segment_id {segment} does not exist at the email platform")
        entries = raw.get("field_map", [])
        if not isinstance(entries, list):
            raise invalid("field_map must be a list")
        return cls(**{**raw, "new_contact_segment_id": segment,
                      "field_map": tuple(_field_map_entry(n, e) for n, e in enumerate(entries))})

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> SyncOptions:
        """Stored options were validated when saved; names this version does not know are left."""
        known = {name: value for name, value in stored.items() if name in cls.names()}
        entries = known.pop("field_map", None) or []
        return cls(**known, field_map=tuple(FieldMapEntry(int(e["kommo_field_id"]), str(e["esp_field"]))
                                            for e in entries))

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["field_map"] = [asdict(entry) for entry in self.field_map]
        return body


def _check_choices(raw: Mapping[str, Any]) -> None:
    consent = raw.get("consent_field_id")
    if consent is not None and (isinstance(consent, bool) or not isinstance(consent, int)):
        raise invalid("consent_field_id must be a Kommo custom field id or null")
    if raw.get("no_consent", "skip") not in NO_CONSENT:
        raise invalid('no_consent must be "skip" or "pending"')
    if raw.get("email_choice", "first") not in EMAIL_CHOICES:
        raise invalid('email_choice must be "first", "WORK" or "PRIV"')
    if raw.get("on_contact_delete", "remove") not in ON_CONTACT_DELETE:
        raise invalid('on_contact_delete must be "remove" or "forget"')
    for flag in ("notes_on_sync", "all_lead_contacts"):
        if not isinstance(raw.get(flag, False), bool):
            raise invalid(f"{flag} must be true or false")


def _field_map_entry(n: int, entry: Any) -> FieldMapEntry:
    if (not isinstance(entry, dict) or isinstance(entry.get("kommo_field_id"), bool)
            or not isinstance(entry.get("kommo_field_id"), int)
            or not isinstance(entry.get("esp_field"), str) or not entry["esp_field"].strip()):
        raise invalid(f"field_map entry {n + 1} needs kommo_field_id (number) and esp_field (text)")
    return FieldMapEntry(entry["kommo_field_id"], entry["esp_field"].strip())

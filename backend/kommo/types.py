"""What the Kommo API v4 answers, as frozen dataclasses read defensively from its JSON.

Shapes Kommo's documentation leaves unconfirmed are read both ways: numbers may come as strings,
`custom_fields_values` may be null, `_embedded` lists may be missing, `is_main` may be absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True)
class AccountInfo:
    id: int
    name: str
    subdomain: str


@dataclass(frozen=True)
class Stage:
    id: int
    name: str
    color: str | None
    sort: int
    type: int  # 1: incoming leads, 0: a regular stage (142 won and 143 lost included)


@dataclass(frozen=True)
class Pipeline:
    id: int
    name: str
    is_main: bool
    is_archive: bool
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class FieldValue:
    value: Any
    enum_id: int | None = None
    enum_code: str | None = None  # WORK, PRIV, … (API reads only; webhooks carry enum ids)


@dataclass(frozen=True)
class FieldValues:
    field_id: int
    code: str | None
    name: str
    type: str | None
    values: tuple[FieldValue, ...]


@dataclass(frozen=True)
class Tag:
    id: int | None
    name: str


@dataclass(frozen=True)
class LeadContact:
    id: int
    is_main: bool


@dataclass(frozen=True)
class Lead:
    id: int
    name: str
    pipeline_id: int | None
    status_id: int | None
    updated_at: int | None
    contacts: tuple[LeadContact, ...]
    tags: tuple[Tag, ...]
    fields: tuple[FieldValues, ...]

    @property
    def main_contact_id(self) -> int | None:
        """The `is_main` contact; the first one when Kommo marks none (the flag is optional)."""
        for contact in self.contacts:
            if contact.is_main:
                return contact.id
        return self.contacts[0].id if self.contacts else None


@dataclass(frozen=True)
class Company:
    """A contact's `_embedded.companies` item carries the id; the name comes from the company."""

    id: int
    name: str = ""


@dataclass(frozen=True)
class Contact:
    id: int
    name: str
    first_name: str
    last_name: str
    updated_at: int | None
    fields: tuple[FieldValues, ...]
    tags: tuple[Tag, ...]
    lead_ids: tuple[int, ...]
    companies: tuple[Company, ...] = ()

    def values_of(self, code: str) -> tuple[FieldValue, ...]:
        return tuple(v for f in self.fields if (f.code or "").upper() == code for v in f.values)

    @property
    def emails(self) -> tuple[FieldValue, ...]:
        return tuple(v for v in self.values_of("EMAIL") if isinstance(v.value, str) and v.value.strip())

    @property
    def phones(self) -> tuple[FieldValue, ...]:
        return self.values_of("PHONE")

    def field(self, field_id: int) -> FieldValues | None:
        return next((f for f in self.fields if f.field_id == field_id), None)


@dataclass(frozen=True)
class LeadsPage:
    leads: tuple[Lead, ...]
    page: int
    has_next: bool


@dataclass(frozen=True)
class CustomField:
    id: int
    name: str
    type: str
    code: str | None


@dataclass(frozen=True)
class Webhook:
    id: int | None
    destination: str
    settings: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True)
class NewNote:
    """A note to add. `service_message` is the type Kommo meant for integrations."""

    entity_id: int
    text: str
    note_type: str = "service_message"
    service: str = "mailsync"
    request_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        params: dict[str, Any] = {"text": self.text}
        if self.note_type in ("service_message", "extended_service_message"):
            params["service"] = self.service
        body: dict[str, Any] = {"entity_id": self.entity_id, "note_type": self.note_type,
                                "params": params}
        if self.request_id is not None:
            body["request_id"] = self.request_id
        return body


# --- reading --------------------------------------------------------------------------------


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value)
    return None


def embedded(body: Any, key: str) -> list[dict[str, Any]]:
    items = (body.get("_embedded") or {}).get(key) if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def account_info(body: dict[str, Any]) -> AccountInfo:
    return AccountInfo(id=_required_id(body), name=str(body.get("name") or ""),
                       subdomain=str(body.get("subdomain") or ""))


def pipeline(body: dict[str, Any]) -> Pipeline:
    stages = sorted((stage(s) for s in embedded(body, "statuses")), key=lambda s: (s.sort, s.id))
    return Pipeline(id=_required_id(body), name=str(body.get("name") or ""),
                    is_main=body.get("is_main") is True, is_archive=body.get("is_archive") is True,
                    stages=tuple(stages))


def stage(body: dict[str, Any]) -> Stage:
    color = body.get("color")
    return Stage(id=_required_id(body), name=str(body.get("name") or ""),
                 color=color if isinstance(color, str) else None,
                 sort=as_int(body.get("sort")) or 0, type=as_int(body.get("type")) or 0)


def lead(body: dict[str, Any]) -> Lead:
    contacts = tuple(LeadContact(id=cid, is_main=c.get("is_main") in (True, "true", "1", 1))
                     for c in embedded(body, "contacts") if (cid := as_int(c.get("id"))) is not None)
    return Lead(id=_required_id(body), name=str(body.get("name") or ""),
                pipeline_id=as_int(body.get("pipeline_id")), status_id=as_int(body.get("status_id")),
                updated_at=as_int(body.get("updated_at")), contacts=contacts,
                tags=tags(body), fields=field_values(body))


def contact(body: dict[str, Any]) -> Contact:
    lead_ids = tuple(i for item in embedded(body, "leads") if (i := as_int(item.get("id"))) is not None)
    return Contact(id=_required_id(body), name=str(body.get("name") or ""),
                   first_name=str(body.get("first_name") or ""),
                   last_name=str(body.get("last_name") or ""),
                   updated_at=as_int(body.get("updated_at")), fields=field_values(body),
                   tags=tags(body), lead_ids=lead_ids,
                   companies=tuple(company(item) for item in embedded(body, "companies")
                                   if as_int(item.get("id")) is not None))


def company(body: dict[str, Any]) -> Company:
    return Company(id=_required_id(body), name=str(body.get("name") or "").strip())


def tags(body: dict[str, Any]) -> tuple[Tag, ...]:
    return tuple(Tag(id=as_int(t.get("id")), name=str(t.get("name") or ""))
                 for t in embedded(body, "tags"))


def field_values(body: dict[str, Any]) -> tuple[FieldValues, ...]:
    raw = body.get("custom_fields_values")
    fields = []
    for field in raw if isinstance(raw, list) else []:
        if not isinstance(field, dict) or (field_id := as_int(field.get("field_id"))) is None:
            continue
        values = field.get("values")
        fields.append(FieldValues(
            field_id=field_id, code=field.get("field_code") or None,
            name=str(field.get("field_name") or ""), type=field.get("field_type") or None,
            values=tuple(FieldValue(value=v.get("value"), enum_id=as_int(v.get("enum_id")),
                                    enum_code=v.get("enum_code") or None)
                         for v in (values if isinstance(values, list) else []) if isinstance(v, dict))))
    return tuple(fields)


def custom_field(body: dict[str, Any]) -> CustomField:
    return CustomField(id=_required_id(body), name=str(body.get("name") or ""),
                       type=str(body.get("type") or ""), code=body.get("code") or None)


def webhook(body: dict[str, Any]) -> Webhook:
    settings = body.get("settings")
    return Webhook(id=as_int(body.get("id")), destination=str(body.get("destination") or ""),
                   settings=tuple(str(s) for s in settings) if isinstance(settings, list) else (),
                   disabled=body.get("disabled") is True)


def _required_id(body: dict[str, Any]) -> int:
    value = as_int(body.get("id"))
    if value is None:
        raise ValueError("a Kommo object without an id")
    return value

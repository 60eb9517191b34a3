"""Mailchimp audience webhook deliveries (form-encoded `type`, `fired_at`, `data[...]`) → neutral
events. Pure: no I/O, no clock.

Mailchimp does not sign these by default: the unguessable hook key in the URL is the credential,
and the route checks it before calling this. `upemail` and `cleaned` field names come from
third-party captures (UNVERIFIED), so both the documented and the observed names are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from backend.errors import MalformedBody
from backend.formdata import parse_form
from backend.providers.base import EspEvent, EventKind, dedupe_key, lower

SOURCE = "mailchimp"
KINDS = {
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "cleaned": EventKind.CLEANED,
    "upemail": EventKind.EMAIL_CHANGED,
    "profile": EventKind.PROFILE_UPDATED,
    "subscribe": EventKind.SUBSCRIBED,
}
IGNORED = frozenset({"campaign"})


def parse_webhook(body: bytes) -> list[EspEvent]:
    form = parse_form(body)
    raw_type = form.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise MalformedBody("a Mailchimp webhook carries `type`")
    if raw_type in IGNORED:
        return []
    data = form.get("data")
    if not isinstance(data, dict):
        raise MalformedBody("a Mailchimp webhook carries `data[...]`")
    return [_event(raw_type, form, data, body)]


def _event(raw_type: str, form: Mapping[str, Any], data: Mapping[str, Any], body: bytes) -> EspEvent:
    fired_at = form.get("fired_at") if isinstance(form.get("fired_at"), str) else None
    if raw_type == "upemail":
        email, new_email = lower(data.get("old_email")), lower(data.get("new_email"))
        subscriber_id = data.get("new_id") or data.get("id")
    else:
        email, new_email = lower(data.get("email")), None
        subscriber_id = data.get("id")
    subscriber = subscriber_id or email
    key = dedupe_key(SOURCE, parts=(data.get("list_id"), raw_type, subscriber, fired_at), body=body)
    return EspEvent(source=SOURCE, kind=KINDS.get(raw_type, EventKind.UNKNOWN), email=email,
                    new_email=new_email, subscriber_id=_text(subscriber_id),
                    occurred_at=parse_fired_at(fired_at), reason=_text(data.get("reason")),
                    dedupe_key=key, raw_type=raw_type)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_fired_at(value: str | None) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS`, in UTC (Mailchimp's documented examples carry no zone)."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None

"""MailerLite webhook deliveries → neutral events. Pure: no I/O, no clock.

The `Signature` header is the lowercase hex HMAC-SHA256 of the raw body keyed with the webhook's
secret (A.8); it is checked before the body is even parsed. Bodies come single (subscriber fields
at top level or under `subscriber`, named by `event` and/or `type`) or batched
(`{"events": [...], "total": n}`); the docs disagree, so every shape is accepted.

Bodies are bounded before they are trusted (docs/ARCHITECTURE.md §3, "Hostile input"): the size
and nesting of the JSON (`jsondata`), at most `MAX_EVENTS` events, and an `event_id` long or odd
enough to overflow a dedupe key is hashed like an event without one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from backend import jsondata
from backend.errors import BadRequest, MalformedBody, PayloadTooLarge, Unauthorized
from backend.providers.base import EspEvent, EventKind, dedupe_key, lower
from backend.security import constant_time_equals, hmac_sha256_hex

SOURCE = "mailerlite"
KINDS = {
    "subscriber.unsubscribed": EventKind.UNSUBSCRIBED,
    "subscriber.bounced": EventKind.BOUNCED,
    "subscriber.spam_reported": EventKind.SPAM_REPORTED,
    "subscriber.updated": EventKind.PROFILE_UPDATED,
    "subscriber.deleted": EventKind.DELETED,
    "subscriber.created": EventKind.SUBSCRIBED,
    "subscriber.active": EventKind.SUBSCRIBED,
    "subscriber.added_to_group": EventKind.ADDED_TO_SEGMENT,
    "subscriber.removed_from_group": EventKind.REMOVED_FROM_SEGMENT,
}
# Deliveries we never asked for but may see when an admin edits the webhook: dropped quietly.
IGNORED = frozenset({"campaign.sent", "campaign.open", "campaign.click",
                     "subscriber.automation_triggered", "subscriber.automation_completed"})
MAX_EVENTS = 10_000
MAX_EVENT_ID = 100  # characters: the id goes into dedupe keys of at most 255


def verify_signature(body: bytes, *, signature: str | None, secret: str) -> None:
    if not signature:
        raise BadRequest("the Signature header is missing", code="missing_signature")
    expected = hmac_sha256_hex(secret, body) if secret else ""
    # An empty configured secret disables the endpoint: nothing verifies against it.
    if not expected or not constant_time_equals(expected, signature.strip().lower()):
        raise Unauthorized("the Signature header does not match the body", code="bad_signature")


def parse_webhook(body: bytes, *, signature: str | None, secret: str) -> list[EspEvent]:
    """Verify, then turn one delivery into events (in delivery order)."""
    verify_signature(body, signature=signature, secret=secret)
    return parse_events(load_json(body), body, SOURCE, KINDS, IGNORED)


def load_json(body: bytes) -> Mapping[str, Any]:
    return jsondata.load_object(body)


def parse_events(payload: Mapping[str, Any], body: bytes, source: str,
                 kinds: Mapping[str, EventKind], ignored: frozenset[str]) -> list[EspEvent]:
    items = payload.get("events") if "events" in payload else [payload]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedBody("`events` must be a list of objects")
    if len(items) > MAX_EVENTS:
        raise PayloadTooLarge(f"a delivery carries at most {MAX_EVENTS} events",
                              code="too_many_events")
    lone = len(items) == 1
    events = [_event(item, body if lone else b"", source, kinds) for item in items
              if _type_of(item) not in ignored]
    return events


def _type_of(item: Mapping[str, Any]) -> str:
    kind = item.get("type") or item.get("event")
    if not isinstance(kind, str) or not kind:
        raise MalformedBody("a webhook event has neither `type` nor `event`")
    return kind


def _subscriber(item: Mapping[str, Any]) -> Mapping[str, Any]:
    nested = item.get("subscriber")
    if isinstance(nested, dict):
        return nested
    data = item.get("data")  # Classic: {"type", "data": {"subscriber": {...}}}
    if isinstance(data, dict) and isinstance(data.get("subscriber"), dict):
        return data["subscriber"]
    return item


def _event(item: Mapping[str, Any], body: bytes, source: str,
           kinds: Mapping[str, EventKind]) -> EspEvent:
    raw_type = _type_of(item)
    subscriber = _subscriber(item)
    email = lower(subscriber.get("email"))
    subscriber_id = str(subscriber["id"]) if subscriber.get("id") not in (None, "") else None
    stamp = _timestamp(subscriber, raw_type)
    key = dedupe_key(source, event_id=_event_id(item.get("event_id")),
                     parts=(raw_type, subscriber_id or email, stamp), body=body or
                     json.dumps(item, sort_keys=True).encode())
    return EspEvent(source=source, kind=kinds.get(raw_type, EventKind.UNKNOWN), email=email,
                    subscriber_id=subscriber_id, occurred_at=parse_time(stamp),
                    reason=_reason(item, subscriber), dedupe_key=key, raw_type=raw_type)


def _event_id(value: object) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value if len(str(value)) <= MAX_EVENT_ID else None


def _timestamp(subscriber: Mapping[str, Any], raw_type: str) -> str | None:
    if raw_type.endswith("unsubscribed") or raw_type.endswith("unsubscribe"):
        first = subscriber.get("unsubscribed_at")
        if first:
            return str(first)
    for name in ("updated_at", "date_updated", "created_at", "date_created"):
        if subscriber.get(name):
            return str(subscriber[name])
    return None


def _reason(item: Mapping[str, Any], subscriber: Mapping[str, Any]) -> str | None:
    for source in (item, subscriber):
        for name in ("reason", "reason_text"):
            if source.get(name):
                return str(source[name])
    return None


def parse_time(value: str | None) -> datetime | None:
    """MailerLite writes `YYYY-MM-DD HH:MM:SS` (UTC) or ISO 8601."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

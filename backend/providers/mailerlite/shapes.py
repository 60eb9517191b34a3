"""MailerLite's JSON shapes (new API) read into the neutral types, at this edge only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.providers.base import EspStatus, Segment, Subscriber, Webhook, lower


def parse_subscriber(data: Mapping[str, Any], *, created: bool = False) -> Subscriber:
    groups = data.get("groups") or ()
    return Subscriber(email=lower(data.get("email")) or "", id=str(data["id"]),
                      status=EspStatus.parse(data.get("status")),
                      segments=tuple(str(g["id"]) for g in groups if isinstance(g, Mapping)),
                      fields=dict(data.get("fields") or {}), created=created)


def parse_group(data: Mapping[str, Any]) -> Segment:
    return Segment(id=str(data["id"]), name=str(data.get("name") or ""))


def parse_webhook_object(data: Mapping[str, Any]) -> Webhook:
    return Webhook(id=str(data["id"]), secret=data.get("secret"))

"""MailerLite's object shapes, as recorded: groups, subscribers, fields, webhooks."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailerlite.store import State


def group_body(state: State, group: dict[str, Any]) -> dict[str, Any]:
    members = [s for s in state.subscribers.values() if group["id"] in state.memberships[s["id"]]]
    count = lambda status: sum(1 for s in members if s["status"] == status)  # noqa: E731
    return {"id": group["id"], "name": group["name"], "active_count": count("active"),
            "sent_count": 0, "opens_count": 0, "open_rate": {"float": 0, "string": "0%"},
            "clicks_count": 0, "click_rate": {"float": 0, "string": "0%"},
            "unsubscribed_count": count("unsubscribed"), "unconfirmed_count": count("unconfirmed"),
            "bounced_count": count("bounced"), "junk_count": count("junk"),
            "created_at": group["created_at"]}


def subscriber_body(state: State, sub: dict[str, Any], *, groups: bool = True) -> dict[str, Any]:
    body = {k: sub[k] for k in ("id", "email", "status", "source", "sent", "opens_count",
                                "clicks_count", "open_rate", "click_rate", "ip_address",
                                "subscribed_at", "unsubscribed_at", "created_at", "updated_at")}
    body["fields"] = {f["key"]: sub["fields"].get(f["key"]) for f in state.fields.values()}
    if groups:
        body["groups"] = [group_body(state, state.groups[g]) for g in state.memberships[sub["id"]]]
    body.update(opted_in_at=None, optin_ip=None)
    return body


def webhook_body(hook: dict[str, Any]) -> dict[str, Any]:
    return dict(hook)


def field_body(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("id", "name", "key", "type", "is_default")}

"""`/subscribers`: upserts (201 new / 200 existing), opt-outs that stay opted out, forgetting."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.sandbox.mailerlite.pagination import cursor_page
from backend.sandbox.mailerlite.shapes import subscriber_body
from backend.sandbox.mailerlite.store import (
    OPTED_OUT,
    STATUSES,
    Handlers,
    invalid,
    not_found,
    now_text,
)
from backend.sandbox.simulator import EMAIL, Answer


class Subscribers(Handlers):
    def count_or_list(self, q: dict[str, str], body: Any) -> Answer:
        if q.get("limit") == "0":
            return 200, {"total": len(self.s.subscribers)}
        subs = [s for s in reversed(self.s.subscribers.values())
                if not q.get("filter[status]") or s["status"] == q["filter[status]"]]
        return 200, cursor_page("subscribers", [subscriber_body(self.s, s, groups="include" in q)
                                                for s in subs], q, 25)

    def upsert(self, q: dict[str, str], body: Any) -> Answer:
        body = body or {}
        email = str(body.get("email") or "").strip()
        if not EMAIL.match(email):
            raise invalid({"email": ["The email must be a valid email address."]})
        groups = [str(g) for g in body.get("groups") or []]
        for index, group in enumerate(groups):
            if group not in self.s.groups:
                raise invalid({f"groups.{index}": [f"The selected groups.{index} is invalid."]})
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise invalid({"status": ["The selected status is invalid."]})
        sub = self.s.by_email(email)
        created = sub is None
        if sub is None:
            sub = self._create(email, status or "active", body.get("ip_address"))
        elif status is not None:
            self._change_status(sub, status, resubscribe=body.get("resubscribe") is True)
        self._apply(sub, body.get("fields") or {}, groups)
        return (201 if created else 200), {"data": subscriber_body(self.s, sub)}

    def _create(self, email: str, status: str, ip: Any) -> dict[str, Any]:
        stamp = now_text()
        sub = {"id": self.s.new_id(), "email": email.lower(), "status": status, "source": "api",
               "sent": 0, "opens_count": 0, "clicks_count": 0, "open_rate": 0, "click_rate": 0,
               "ip_address": ip, "subscribed_at": stamp, "created_at": stamp, "updated_at": stamp,
               "unsubscribed_at": stamp if status in OPTED_OUT else None, "fields": {}}
        self.s.subscribers[sub["id"]] = sub
        self.s.memberships[sub["id"]] = []
        return sub

    def _change_status(self, sub: dict[str, Any], status: str, *, resubscribe: bool) -> None:
        if sub["status"] in OPTED_OUT and status not in OPTED_OUT and not resubscribe:
            raise invalid({"status": [f"This subscriber is {sub['status']} and cannot be "
                                      "reactivated through the API."]})
        sub["status"] = status
        if status in OPTED_OUT:
            sub["unsubscribed_at"] = now_text()

    def _apply(self, sub: dict[str, Any], fields: dict[str, Any], groups: Iterable[str]) -> None:
        keys = {f["key"] for f in self.s.fields.values()}
        sub["fields"].update({k: v for k, v in fields.items() if k in keys})
        member = self.s.memberships[sub["id"]]
        member.extend(g for g in groups if g not in member)
        sub["updated_at"] = now_text()

    def get_subscriber(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        return 200, {"data": subscriber_body(self.s, self.s.find(ident))}

    def update_subscriber(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        sub, body = self.s.find(ident), body or {}
        if "status" in body:
            self._change_status(sub, body["status"], resubscribe=False)
        if "groups" in body:
            self.s.memberships[sub["id"]] = []
        self._apply(sub, body.get("fields") or {}, [str(g) for g in body.get("groups") or []])
        return 200, {"data": subscriber_body(self.s, sub)}

    def delete_subscriber(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        sub = self.s.subscribers.get(ident)
        if sub is None:
            raise not_found("Subscriber\\Subscriber")
        del self.s.subscribers[ident]
        self.s.memberships.pop(ident, None)
        return 204, None

    def forget(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        sub = self.s.find(ident)
        data = subscriber_body(self.s, sub)
        stamp = datetime.now(UTC)
        data["deleted_at"] = stamp.strftime("%Y-%m-%d %H:%M:%S")
        data["forget_at"] = (stamp + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
        data["location"] = None
        del self.s.subscribers[sub["id"]]
        return 200, {"data": data, "message": "Subscriber data will be completely deleted and "
                                              "forgotten within 30 days."}

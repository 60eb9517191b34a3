"""`/groups` and a subscriber's group memberships."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailerlite.pagination import cursor_page, page_of
from backend.sandbox.mailerlite.shapes import group_body, subscriber_body
from backend.sandbox.mailerlite.store import Refusal, invalid, not_found, now_text
from backend.sandbox.mailerlite.subscribers import Subscribers
from backend.sandbox.simulator import Answer


class Groups(Subscribers):
    def assign(self, ident: str, group_id: str, q: dict[str, str], body: Any) -> Answer:
        sub = self.s.find(ident)
        if group_id not in self.s.groups:
            raise Refusal(422, {"message": "The selected id is invalid.",
                                "errors": {"id": ["The selected id is invalid."]}})
        self._apply(sub, {}, [group_id])
        return 200, {"data": group_body(self.s, self.s.groups[group_id])}

    def unassign(self, ident: str, group_id: str, q: dict[str, str], body: Any) -> Answer:
        sub = self.s.find(ident)
        if group_id not in self.s.memberships[sub["id"]]:
            raise Refusal(404, {"message": ""})
        self.s.memberships[sub["id"]].remove(group_id)
        return 204, None

    def list_groups(self, q: dict[str, str], body: Any) -> Answer:
        wanted = (q.get("filter[name]") or "").casefold()
        groups = [group_body(self.s, g) for g in self.s.groups.values()
                  if wanted in g["name"].casefold()]
        return 200, page_of("groups", groups, q, 100)

    def create_group(self, q: dict[str, str], body: Any) -> Answer:
        name = str((body or {}).get("name") or "")
        if not name or len(name) > 255:
            raise invalid({"name": ["The name field is required."]})
        group = {"id": self.s.new_id(), "name": name, "created_at": now_text()}
        self.s.groups[group["id"]] = group
        return 201, {"data": group_body(self.s, group)}

    def update_group(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        group = self._group(ident)
        group["name"] = str((body or {}).get("name") or group["name"])
        return 200, {"data": group_body(self.s, group)}

    def delete_group(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        self._group(ident)
        del self.s.groups[ident]
        for member in self.s.memberships.values():
            if ident in member:
                member.remove(ident)
        return 204, None

    def _group(self, ident: str) -> dict[str, Any]:
        if ident not in self.s.groups:
            raise not_found("Group\\Group", ident)
        return self.s.groups[ident]

    def group_subscribers(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        self._group(ident)
        status = q.get("filter[status]") or "active"
        subs = [subscriber_body(self.s, s, groups=False) for s in self.s.subscribers.values()
                if ident in self.s.memberships[s["id"]] and s["status"] == status]
        return 200, cursor_page(f"groups/{ident}/subscribers", subs, q, 50)

"""Member tags, which Mailchimp keeps as static segments of the audience."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailchimp.store import Audience, Handlers, Problem, stamp
from backend.sandbox.simulator import Answer


class Tags(Handlers):
    def member_tags(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        member = self._member(audience, ident)
        tags = [{"id": int(self._segment_id(audience, t)), "name": t, "date_added": stamp()}
                for t in member["tags"]]
        return 200, {"tags": tags, "total_items": len(tags)}

    def set_tags(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        member = self._member(audience, ident)
        for tag in (body or {}).get("tags") or []:
            if not tag.get("name") or tag.get("status") not in ("active", "inactive"):
                raise Problem(400, "Invalid Resource", "The resource submitted could not be "
                              "validated.", [{"field": "tags", "message": "name and status"}])
            self._tag(audience, member, tag["name"], tag["status"] == "active")
        return 204, None

    def _tag(self, audience: Audience, member: dict[str, Any], name: str, on: bool) -> None:
        if on and name not in member["tags"]:
            self._segment_id(audience, name, create=True)
            member["tags"].append(name)
        elif not on and name in member["tags"]:
            member["tags"].remove(name)

    def _segment_id(self, audience: Audience, name: str, *, create: bool = False) -> str:
        for segment in audience.segments.values():
            if segment["name"] == name:
                return segment["id"]
        if not create:
            return "0"
        ident = str(self.sb.next_id())
        audience.segments[ident] = {"id": ident, "name": name, "type": "static"}
        return ident

    def tag_search(self, list_id: str, q: dict, body: Any) -> Answer:
        prefix = q.get("name") or ""
        tags = [{"id": int(s["id"]), "name": s["name"]} for s in self._list(list_id).segments.values()
                if s["name"].startswith(prefix)]
        return 200, {"tags": tags, "total_items": len(tags)}

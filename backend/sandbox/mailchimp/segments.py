"""`/lists/{id}/segments`: static segments and adding or removing their members in bulk."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailchimp.members import Members
from backend.sandbox.mailchimp.store import Problem, md5
from backend.sandbox.simulator import Answer


class Segments(Members):
    def segments(self, list_id: str, q: dict, body: Any) -> Answer:
        items = list(self._list(list_id).segments.values())
        start, count = int(q.get("offset") or 0), int(q.get("count") or 10)
        return 200, {"segments": [self._segment_body(list_id, s) for s in items[start:start + count]],
                     "total_items": len(items), "list_id": list_id}

    def _segment_body(self, list_id: str, segment: dict[str, Any]) -> dict[str, Any]:
        audience = self._list(list_id)
        count = sum(1 for m in audience.members.values() if segment["name"] in m["tags"])
        return {"id": int(segment["id"]), "name": segment["name"], "member_count": count,
                "type": "static", "list_id": list_id}

    def add_segment(self, list_id: str, q: dict, body: Any) -> Answer:
        audience, name = self._list(list_id), str((body or {}).get("name") or "")
        if not name or any(s["name"] == name for s in audience.segments.values()):
            raise Problem(400, "Bad Request", "Sorry, that tag already exists." if name
                          else "name is required.")
        ident = self._segment_id(audience, name, create=True)
        for email in (body or {}).get("static_segment") or []:
            self._tag(audience, self._member(audience, email), name, True)
        return 200, self._segment_body(list_id, audience.segments[ident])

    def segment_members(self, list_id: str, segment_id: str, q: dict, body: Any) -> Answer:
        audience, body = self._list(list_id), body or {}
        segment = audience.segments.get(segment_id)
        if segment is None:
            raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
        adds, removes = body.get("members_to_add") or [], body.get("members_to_remove") or []
        if len(adds) > 500 or len(removes) > 500:
            raise Problem(400, "Invalid Resource", "At most 500 members per call.")
        answer: dict[str, Any] = {"members_added": [], "members_removed": [], "errors": []}
        for emails, on, key in ((adds, True, "members_added"), (removes, False, "members_removed")):
            for email in emails:
                member = audience.members.get(md5(email))
                if member is not None:  # unknown emails are ignored (B.6)
                    self._tag(audience, member, segment["name"], on)
                    answer[key].append(self.member_body(audience, member))
        answer.update(total_added=len(answer["members_added"]), error_count=0,
                      total_removed=len(answer["members_removed"]))
        return 200, answer

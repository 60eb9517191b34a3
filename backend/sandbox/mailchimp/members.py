"""`/lists/{id}/members`: members keyed by md5(lower(email)), compliance states, forgetting."""

from __future__ import annotations

import uuid
from typing import Any

from backend.sandbox.mailchimp.store import OPTED_OUT, STATUSES, Audience, Problem, md5, stamp
from backend.sandbox.mailchimp.tags import Tags
from backend.sandbox.simulator import EMAIL, Answer


class Members(Tags):
    def list_members(self, list_id: str, q: dict, body: Any) -> Answer:
        """All statuses but archived, in the order added; `count` at most 1,000."""
        audience = self._list(list_id)
        count, offset = min(int(q.get("count") or 10), 1000), int(q.get("offset") or 0)
        members = [m for m in audience.members.values() if m["status"] != "archived"]
        return 200, {"members": [self.member_body(audience, m) for m in members[offset:offset + count]],
                     "list_id": list_id, "total_items": len(members)}

    def get_member(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        return 200, self.member_body(audience, self._member(audience, ident))

    def put_member(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        return 200, self.member_body(audience, self.upsert(audience, body or {}, ident))

    def upsert(self, audience: Audience, body: dict[str, Any], ident: str | None = None) -> dict:
        email = str(body.get("email_address") or "").strip().lower()
        if ident is not None and ident not in (md5(email), email):
            raise Problem(400, "Invalid Resource", "The subscriber hash does not match the email.")
        self._check_address(audience, email)
        member = audience.members.get(md5(email))
        if member is None:
            status = body.get("status_if_new") or body.get("status")
            if status not in STATUSES:
                raise Problem(400, "Invalid Resource", "The resource submitted could not be "
                              "validated.", [{"field": "status", "message": "Invalid status"}])
            member = self._new_member(audience, email, status)
        elif body.get("status"):
            self._set_status(member, body["status"])
        self._merge(audience, member, body.get("merge_fields") or {})
        return member

    def _check_address(self, audience: Audience, email: str) -> None:
        if not EMAIL.match(email):
            raise Problem(400, "Invalid Resource", f"{email} looks fake or invalid, please enter "
                          "a real email address.")
        if email.rsplit("@", 1)[1] in self.sb.fake_domains:
            raise Problem(400, "Invalid Resource", f"{email} looks fake or invalid, please enter "
                          "a real email address.")
        if md5(email) in audience.forgotten:
            raise Problem(400, "Forgotten Email Not Subscribed", f"{email} was permanently "
                          "deleted and cannot be re-imported. The contact must re-subscribe to "
                          "get back on the list.")

    def _set_status(self, member: dict[str, Any], status: str) -> None:
        if member["status"] in OPTED_OUT and status in ("subscribed",):
            raise Problem(400, "Member In Compliance State", f"{member['email_address']} is in a "
                          "compliance state due to unsubscribe, bounce, or compliance review and "
                          "cannot be subscribed.")
        if member["status"] == "cleaned" and status != "cleaned":
            return  # a cleaned address stays cleaned
        member["status"] = status
        member["last_changed"] = stamp()

    def _new_member(self, audience: Audience, email: str, status: str) -> dict[str, Any]:
        member = {"id": md5(email), "email_address": email, "unique_email_id": uuid.uuid4().hex[:10],
                  "status": status, "merge_fields": {}, "tags": [], "last_changed": stamp(),
                  "timestamp_signup": stamp(), "source": "API - Generic"}
        audience.members[member["id"]] = member
        return member

    def _merge(self, audience: Audience, member: dict[str, Any], values: dict[str, Any]) -> None:
        tags = {f["tag"] for f in audience.merge_fields}
        member["merge_fields"].update({k: v for k, v in values.items() if k in tags})

    def member_body(self, audience: Audience, member: dict[str, Any]) -> dict[str, Any]:
        tags = [{"id": int(self._segment_id(audience, t)), "name": t} for t in member["tags"]]
        merge = {f["tag"]: member["merge_fields"].get(f["tag"], "") for f in audience.merge_fields}
        return {**{k: v for k, v in member.items() if k not in ("tags", "merge_fields")},
                "full_name": "", "email_type": "html", "merge_fields": merge, "list_id": audience.id,
                "tags_count": len(tags), "tags": tags[:50], "_links": []}

    def patch_member(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        member = self._member(audience, ident)
        if (body or {}).get("status"):
            self._set_status(member, body["status"])
        self._merge(audience, member, (body or {}).get("merge_fields") or {})
        return 200, self.member_body(audience, member)

    def archive_member(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        member = self._member(audience, ident)
        member["status"] = "archived"
        return 204, None

    def delete_permanent(self, list_id: str, ident: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        member = self._member(audience, ident)
        del audience.members[member["id"]]
        audience.forgotten.add(member["id"])
        return 204, None

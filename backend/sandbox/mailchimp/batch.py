"""`POST /lists/{id}`: batch subscribe, up to 500 members, errors reported per member."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailchimp.members import Members
from backend.sandbox.mailchimp.store import Problem, md5
from backend.sandbox.simulator import Answer


class BatchSubscribe(Members):
    def batch(self, list_id: str, q: dict, body: Any) -> Answer:
        audience, body = self._list(list_id), body or {}
        members = body.get("members") or []
        if len(members) > 500:
            raise Problem(400, "Invalid Resource", "At most 500 members per call.")
        answer: dict[str, Any] = {"new_members": [], "updated_members": [], "errors": []}
        for item in members:
            existed = md5(str(item.get("email_address", ""))) in audience.members
            try:
                if existed and not body.get("update_existing"):
                    raise Problem(400, "Member Exists", f"{item['email_address']} is already a "
                                  "list member.")
                member = self.upsert(audience, item)
            except Problem as problem:
                answer["errors"].append({"email_address": item.get("email_address"),
                                         "error": problem.body["detail"],
                                         "error_code": "ERROR_GENERIC", "field": "", "field_message": ""})
                continue
            for name in item.get("tags") or []:
                self._tag(audience, member, name, True)
            answer["updated_members" if existed else "new_members"].append(
                self.member_body(audience, member))
        answer.update(total_created=len(answer["new_members"]), error_count=len(answer["errors"]),
                      total_updated=len(answer["updated_members"]))
        return 200, answer

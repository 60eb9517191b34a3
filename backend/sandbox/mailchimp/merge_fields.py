"""`/lists/{id}/merge-fields`: tags of at most 10 characters, a limited number per audience."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailchimp.store import Handlers, Problem
from backend.sandbox.simulator import Answer


class MergeFields(Handlers):
    def merge_fields(self, list_id: str, q: dict, body: Any) -> Answer:
        fields = self._list(list_id).merge_fields
        return 200, {"merge_fields": fields, "list_id": list_id, "total_items": len(fields)}

    def add_merge_field(self, list_id: str, q: dict, body: Any) -> Answer:
        audience, body = self._list(list_id), body or {}
        tag = str(body.get("tag") or body.get("name", "")[:10]).upper()
        if not body.get("name") or not body.get("type"):
            raise Problem(400, "Invalid Resource", "name and type are required.")
        if len(tag) > 10 or any(f["tag"] == tag for f in audience.merge_fields):
            raise Problem(400, "Invalid Resource", f"The merge tag {tag!r} is invalid or in use.")
        if len(audience.merge_fields) >= self.sb.merge_field_limit:
            raise Problem(400, "Invalid Resource", "This audience has reached its limit of "
                          f"{self.sb.merge_field_limit} merge fields.")
        item = {"merge_id": len(audience.merge_fields) + 1, "tag": tag, "name": body["name"],
                "type": body["type"], "required": False, "default_value": "", "public": False,
                "display_order": len(audience.merge_fields) + 2, "list_id": list_id}
        audience.merge_fields.append(item)
        return 200, item

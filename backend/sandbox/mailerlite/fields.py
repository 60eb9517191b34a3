"""`/fields`: custom subscriber fields, keyed by the snake_case of their name."""

from __future__ import annotations

import re
from typing import Any

from backend.sandbox.mailerlite.pagination import page_of
from backend.sandbox.mailerlite.shapes import field_body
from backend.sandbox.mailerlite.store import Handlers, invalid, not_found
from backend.sandbox.simulator import Answer


class Fields(Handlers):
    def list_fields(self, q: dict[str, str], body: Any) -> Answer:
        items = [field_body(f) | {"used_in_automations": False} for f in self.s.fields.values()]
        if q.get("sort") in ("name", "-name"):
            items.sort(key=lambda f: f["name"].casefold(), reverse=q["sort"].startswith("-"))
        return 200, page_of("fields", items, q, 100)

    def create_field(self, q: dict[str, str], body: Any) -> Answer:
        name, kind = str((body or {}).get("name") or ""), (body or {}).get("type", "text")
        if not name or kind not in ("text", "number", "date"):
            raise invalid({"name": ["The name field is required."]})
        key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        if any(f["key"] == key for f in self.s.fields.values()):
            raise invalid({"name": ["The name has already been taken."]})
        item = {"id": str(947147 + len(self.s.fields)), "name": name, "key": key, "type": kind,
                "is_default": False}
        self.s.fields[item["id"]] = item
        return 201, {"data": field_body(item)}

    def update_field(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        item = self._field(ident)
        item["name"] = str((body or {}).get("name") or item["name"])
        return 200, {"data": field_body(item)}

    def delete_field(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        self._field(ident)
        del self.s.fields[ident]
        return 204, None

    def _field(self, ident: str) -> dict[str, Any]:
        if ident not in self.s.fields:
            raise not_found("Field", ident)
        return self.s.fields[ident]

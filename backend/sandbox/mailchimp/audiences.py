"""`/ping` and `/lists`: the account's audiences."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailchimp.store import Audience, Handlers
from backend.sandbox.simulator import Answer


class Audiences(Handlers):
    def ping(self, q: dict, body: Any) -> Answer:
        return 200, {"health_status": "Everything's Chimpy!"}

    def lists(self, q: dict, body: Any) -> Answer:
        audiences = [self.list_body(a) for a in self.sb.audiences.values()]
        return 200, {"lists": audiences, "total_items": len(audiences)}

    def get_list(self, list_id: str, q: dict, body: Any) -> Answer:
        return 200, self.list_body(self._list(list_id))

    @staticmethod
    def list_body(audience: Audience) -> dict[str, Any]:
        subscribed = sum(1 for m in audience.members.values() if m["status"] == "subscribed")
        return {"id": audience.id, "web_id": 1, "name": audience.name, "double_optin": False,
                "stats": {"member_count": subscribed}}

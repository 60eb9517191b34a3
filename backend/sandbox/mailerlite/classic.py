"""Classic v2 under `/api/v2`: just enough to connect (key check, groups, webhooks)."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailerlite.store import State, now_text
from backend.sandbox.simulator import Answer


def classic_dispatch(state: State, method: str, path: str, body: Any) -> Answer:
    body = body or {}
    if method == "GET" and path == "groups":
        return 200, [{"id": int(g["id"]), "name": g["name"], "total": len(
            [m for m in state.memberships.values() if g["id"] in m])} for g in state.groups.values()]
    if method == "POST" and path == "groups" and body.get("name"):
        group = {"id": state.new_id(), "name": str(body["name"]), "created_at": now_text()}
        state.groups[group["id"]] = group
        return 200, {"id": int(group["id"]), "name": group["name"], "total": 0}
    if method == "POST" and path == "webhooks" and body.get("url") and body.get("event"):
        # Classic ids are small integers, unlike the new API's 18-digit strings.
        small = [int(k) for k in state.webhooks if len(k) < 10]
        hook = {"id": str(max(small, default=1000) + 1), "url": body["url"],
                "events": [body["event"]],
                "enabled": True, "secret": "", "batchable": True, "classic": True}
        state.webhooks[hook["id"]] = hook
        return 200, {"id": int(hook["id"]), "url": hook["url"], "event": body["event"],
                     "date_created": now_text()}
    hook_id = path.removeprefix("webhooks/")
    if method == "DELETE" and path.startswith("webhooks/") and hook_id in state.webhooks:
        del state.webhooks[hook_id]
        return 200, {"success": True}
    return 404, {"error": {"code": 404, "message": "Not found"}}

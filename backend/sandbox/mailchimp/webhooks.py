"""Audience webhooks (validated with a GET before they are accepted) and form-encoded deliveries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx2

from backend.sandbox.mailchimp.store import Audience, Handlers, Problem
from backend.sandbox.simulator import Answer


class Webhooks(Handlers):
    def webhooks(self, list_id: str, q: dict, body: Any) -> Answer:
        hooks = list(self._list(list_id).webhooks.values())
        return 200, {"webhooks": hooks, "list_id": list_id, "total_items": len(hooks)}

    async def add_webhook(self, list_id: str, q: dict, body: Any) -> Answer:
        audience, body = self._list(list_id), body or {}
        url = str(body.get("url") or "")
        if not url.startswith(("http://", "https://")) or not await self.sb.validate_url(url):
            raise Problem(400, "Invalid Resource", "The resource submitted could not be validated. "
                          "For field-specific details, see the 'errors' array.",
                          [{"field": "url", "message": "The URL did not answer our GET with 200."}])
        hook = {"id": uuid.uuid4().hex[:10], "url": url, "list_id": list_id,
                "events": {k: bool(v) for k, v in (body.get("events") or {}).items()},
                "sources": {k: bool(v) for k, v in (body.get("sources") or {}).items()}}
        audience.webhooks[hook["id"]] = hook
        return 200, hook

    def delete_webhook(self, list_id: str, hook_id: str, q: dict, body: Any) -> Answer:
        audience = self._list(list_id)
        if audience.webhooks.pop(hook_id, None) is None:
            raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
        return 204, None


async def deliver(audience: Audience, list_id: str, kind: str, data: dict[str, str], *,
                  client: httpx2.AsyncClient, source: str = "user") -> list[httpx2.Response]:
    """POST a form-encoded `kind` event (`data` is the `data[...]` map) to every webhook of the
    audience that wants it from `source`."""
    fields = {"type": kind, "fired_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
              **{f"data[{k}]": v for k, v in {"list_id": list_id, **data}.items()}}
    answers = []
    for hook in list(audience.webhooks.values()):
        if hook["events"].get(kind) and hook["sources"].get(source):
            answers.append(await client.post(hook["url"], content=urlencode(fields), headers={
                "Content-Type": "application/x-www-form-urlencoded"}))
    return answers

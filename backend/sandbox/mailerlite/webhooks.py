"""`/webhooks` (each with its own signing secret), and delivering signed events to them."""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

import httpx2

from backend.sandbox.mailerlite.pagination import page_of
from backend.sandbox.mailerlite.shapes import subscriber_body, webhook_body
from backend.sandbox.mailerlite.store import Handlers, State, invalid, not_found, now_text
from backend.sandbox.simulator import Answer
from backend.security import hmac_sha256_hex


class Webhooks(Handlers):
    def list_webhooks(self, q: dict[str, str], body: Any) -> Answer:
        return 200, page_of("webhooks", [webhook_body(h) for h in self.s.webhooks.values()], q, 50)

    def create_webhook(self, q: dict[str, str], body: Any) -> Answer:
        body = body or {}
        if not body.get("url") or not isinstance(body.get("events"), list) or not body["events"]:
            raise invalid({"url": ["The url field is required."]})
        stamp = now_text()
        alphabet = string.ascii_letters + string.digits
        hook = {"id": self.s.new_id(), "name": body.get("name") or "", "url": body["url"],
                "events": list(body["events"]), "enabled": body.get("enabled", True),
                "is_blocked": False, "secret": "".join(secrets.choice(alphabet) for _ in range(10)),
                "created_at": stamp, "updated_at": stamp, "batchable": bool(body.get("batchable")),
                "version": "2022-01", "last_fired_at": None, "response_code": None}
        self.s.webhooks[hook["id"]] = hook
        return 201, {"data": webhook_body(hook)}

    def get_webhook(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        return 200, {"data": webhook_body(self._webhook(ident))}

    def update_webhook(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        hook = self._webhook(ident)
        hook.update({k: v for k, v in (body or {}).items()
                     if k in ("name", "url", "events", "enabled", "batchable")})
        return 200, {"data": webhook_body(hook)}

    def delete_webhook(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        self._webhook(ident)
        del self.s.webhooks[ident]
        return 204, None

    def _webhook(self, ident: str) -> dict[str, Any]:
        if ident not in self.s.webhooks:
            raise not_found("Webhook", ident)
        return self.s.webhooks[ident]


async def deliver(state: State, event: str, email: str, *, client: httpx2.AsyncClient,
                  signature: str | None = None) -> list[httpx2.Response]:
    """POST `event` about `email` to every enabled webhook that asked for it, signed with
    its secret (or with `signature`, to forge one)."""
    sub = state.by_email(email)
    if sub is None:
        raise KeyError(email)
    answers = []
    for hook in list(state.webhooks.values()):
        if hook["enabled"] and event in hook["events"] and not hook.get("classic"):
            answers.append(await _post(state, hook, event, sub, client, signature))
    return answers


async def _post(state: State, hook: dict[str, Any], event: str, sub: dict[str, Any],
                client: httpx2.AsyncClient, signature: str | None) -> httpx2.Response:
    data = subscriber_body(state, sub, groups=False)
    payload = ({"events": [{"type": event, "account_id": "83510", "subscriber": data}],
                "total": 1} if hook["batchable"]
               else {**data, "event": event, "type": event, "account_id": "83510"})
    raw = json.dumps(payload).encode()
    answer = await client.post(hook["url"], content=raw, headers={
        "Content-Type": "application/json",
        "Signature": signature if signature is not None else hmac_sha256_hex(hook["secret"], raw)})
    hook.update(last_fired_at=now_text(), response_code=answer.status_code)
    return answer

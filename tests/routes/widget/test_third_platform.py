"""A third email platform, written and registered by this test alone: the admin connects it from
the widget, a lead's stage puts its contact in the platform's segment, and the platform's
unsubscribe webhook comes back to Kommo as a note. Nothing outside `providers/` names a platform,
so nothing else has to change for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from backend import activity_log, jobs, repository
from backend.errors import Unauthorized, Unprocessable
from backend.providers import registry
from backend.providers.base import (
    BulkResult,
    EspEvent,
    EspList,
    EspStatus,
    EventKind,
    Segment,
    Subscriber,
    SubscriberData,
    Webhook,
    dedupe_key,
)
from backend.sandbox.kommo_store import PIPELINE_ID
from backend.security import constant_time_equals
from backend.sync import reconcile
from backend.sync.handlers import HANDLERS
from backend.worker import Worker
from tests.kommo.fixtures import ACME, seed_tokens, widget_token
from tests.polling import eventually

KEY = "postbox-key-0123456789"
QUALIFIED = 67548607


@dataclass
class Platform:
    """The fake platform's side: its subscribers, segments and the webhook it will call."""

    subscribers: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: dict[str, str] = field(default_factory=lambda: {"s1": "Customers"})
    webhooks: dict[str, dict[str, str]] = field(default_factory=dict)


class PostboxProvider:
    kind: ClassVar[str] = "postbox"
    family: ClassVar[str] = "postbox"
    service: ClassVar[str] = "postbox"
    display_name: ClassVar[str] = "Postbox"
    segment_noun: ClassVar[str] = "list"
    key_help: ClassVar[str] = "Settings → API"
    uses_lists: ClassVar[bool] = False
    answers_url_check: ClassVar[bool] = False
    echoes_own_unsubscribes: ClassVar[bool] = False
    platform: ClassVar[Platform] = Platform()

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    @staticmethod
    def recognises_key(api_key: str) -> bool | None:
        return api_key.startswith("postbox-") or None

    @classmethod
    def from_key(cls, resources: Any, api_key: str, *, list_id: str | None = None) -> PostboxProvider:
        return cls(api_key)

    @classmethod
    def read_webhook(cls, connection: Any, resources: Any, *, body: bytes,
                     headers: Mapping[str, str]) -> list[EspEvent]:
        secret = resources.vault.decrypt(connection.webhook_secret_enc)
        if not constant_time_equals(headers.get("X-Postbox-Token", ""), secret):
            raise Unauthorized("bad token", code="bad_signature")
        item = json.loads(body)
        return [EspEvent(source="postbox", kind=EventKind(item["event"]), email=item["email"],
                         dedupe_key=dedupe_key("postbox", event_id=item["id"]))]

    def connection_fields(self) -> dict[str, Any]:
        return {}

    async def validate(self) -> str:
        if self.api_key != KEY:
            raise Unprocessable("Postbox refused this key", code="invalid_api_key")
        return "Postbox"

    async def list_lists(self) -> list[EspList]:
        return []

    async def list_segments(self) -> list[Segment]:
        return [Segment(id=k, name=v) for k, v in self.platform.segments.items()]

    async def create_segment(self, name: str) -> Segment:
        self.platform.segments[f"s{len(self.platform.segments) + 1}"] = name
        return (await self.list_segments())[-1]

    async def get_subscriber(self, email: str) -> Subscriber | None:
        found = self.platform.subscribers.get(email)
        return None if found is None else Subscriber(email, email, found["status"], tuple(found["segments"]))

    async def lookup(self, emails: Sequence[str]) -> Mapping[str, Subscriber]:
        return {e: s for e in emails if (s := await self.get_subscriber(e)) is not None}

    async def ensure_fields(self, names: Sequence[str]) -> Mapping[str, str]:
        return {name: name for name in names}

    async def upsert(self, data: SubscriberData) -> Subscriber:
        found = self.platform.subscribers.setdefault(
            data.email, {"status": EspStatus.ACTIVE, "segments": set(), "fields": {}})
        found["segments"] = (found["segments"] | set(data.add_segments)) - set(data.remove_segments)
        found["fields"].update({k: v for k, v in data.fields.items() if v is not None})
        return Subscriber(data.email, data.email, found["status"], tuple(found["segments"]))

    async def set_membership(self, email: str, *, add: Sequence[str] = (),
                             remove: Sequence[str] = ()) -> None:
        await self.upsert(SubscriberData(email, add_segments=add, remove_segments=remove))

    async def unsubscribe(self, email: str) -> None:
        self.platform.subscribers[email]["status"] = EspStatus.UNSUBSCRIBED

    async def forget(self, email: str) -> None:
        self.platform.subscribers.pop(email, None)

    async def register_webhook(self, url: str) -> Webhook:
        self.platform.webhooks["w1"] = {"url": url, "secret": "postbox-secret"}
        return Webhook(id="w1", secret="postbox-secret")

    async def delete_webhook(self, webhook_id: str) -> None:
        self.platform.webhooks.pop(webhook_id, None)

    async def bulk_upsert(self, items: Sequence[SubscriberData]) -> BulkResult:
        return BulkResult(succeeded=tuple([(await self.upsert(i)).email for i in items]))

    async def bulk_set_membership(self, segment_id: str, *, add: Sequence[str] = (),
                                  remove: Sequence[str] = ()) -> BulkResult:
        for email in add:
            await self.set_membership(email, add=[segment_id])
        return BulkResult(succeeded=tuple(add))


@pytest.fixture
def postbox(monkeypatch) -> Platform:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test
    monkeypatch.setattr(PostboxProvider, "platform", Platform())
    registry.register(PostboxProvider)
    return PostboxProvider.platform


async def test_connect_reconcile_and_webhook_through_a_third_platform(postbox, kommo, kommo_resources, web):
    resources = kommo_resources
    await seed_tokens(resources, kommo)
    headers = {"X-Auth-Token": widget_token(resources.settings)}
    refused = await web.put("/api/widget/provider", headers=headers,
                            json={"kind": "postbox", "api_key": "no"})
    assert (refused.status_code, refused.json()["error"]) == (
        422, {"code": "invalid_api_key", "message": "Postbox refused this key"})
    answer = await web.put("/api/widget/provider", headers=headers, json={"kind": "postbox", "api_key": KEY})
    assert answer.json()["provider"] == {"kind": "postbox", "label": "Postbox", "status": "ok"}
    async with resources.sessions() as session:
        hook_key = (await repository.get_esp_connection(session, ACME)).hook_key
    assert postbox.webhooks["w1"]["url"] == f"https://mailsync.test/webhooks/postbox/{hook_key}"
    mapped = await web.put("/api/widget/mapping", headers=headers, json={"rules": [
        {"pipeline_id": PIPELINE_ID, "status_id": QUALIFIED, "action": "segment", "segment_id": "s1"}]})
    assert mapped.status_code == 200, mapped.text

    contact = kommo.store.add_contact(ACME, "Jane Doe", emails=["jane@shop.io"])
    lead = kommo.store.add_lead(ACME, status_id=QUALIFIED, contacts=[contact.id])
    await reconcile.reconcile_lead(resources, ACME, lead.id)
    assert postbox.subscribers["jane@shop.io"]["segments"] == {"s1"}
    async with resources.sessions() as session:
        [done] = await activity_log.list_activity(session, ACME)
    assert done.summary == "added to list “Customers” (stage Qualified)"

    body = json.dumps({"id": "e1", "event": "unsubscribed", "email": "jane@shop.io"})
    forged = await web.post(f"/webhooks/postbox/{hook_key}", content=body, headers={"X-Postbox-Token": "x"})
    assert forged.status_code == 401
    hooked = await web.post(f"/webhooks/postbox/{hook_key}", content=body,
                            headers={"X-Postbox-Token": "postbox-secret"})
    assert (hooked.status_code, hooked.json()) == (200, {"accepted": 1})
    await _run_queue(resources)
    [note] = [n for n in kommo.store.account(ACME).notes if n["entity_id"] == lead.id]
    assert note["params"]["text"].startswith("jane@shop.io unsubscribed at Postbox")


async def _run_queue(resources) -> None:
    async def empty() -> bool:
        async with resources.sessions() as session:
            counts = await jobs.counts_by_state(session)
        return not counts.get("pending") and not counts.get("running")

    stop = asyncio.Event()
    task = asyncio.create_task(Worker(resources, concurrency=1, poll_interval=0.01,
                                      handlers=HANDLERS).run(stop))
    try:
        await eventually(empty, message="the queue did not drain")
    finally:
        stop.set()
        await task

"""MailerLite Classic (api.mailerlite.com/api/v2, `X-MailerLite-ApiKey`, 32-hex-character keys).

UNVERIFIED: our shared notes cover the new API only; the Classic shapes here (bare JSON arrays,
integer ids, `type` for the status, `fields` as `[{key, value}]`, one webhook per event, events
`subscriber.unsubscribe/bounce/complaint/update`) follow the retired v2 reference from memory and
are parsed defensively. Ids are turned into strings at this edge like everywhere else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx2

from backend.errors import (
    BadRequest,
    PermanentRefusal,
    Unauthorized,
    Unprocessable,
    UpstreamNotFound,
    UpstreamUnauthorized,
)
from backend.providers import cache
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
    lower,
)
from backend.providers.mailerlite.api import SERVICE, MailerLiteApi, key_shape
from backend.providers.mailerlite.client import DEFAULT_KEYS, resolve_field
from backend.providers.mailerlite.webhooks import load_json, parse_events
from backend.ratelimit import RateLimiter

if TYPE_CHECKING:
    from backend.models import EspConnection
    from backend.resources import Resources

SOURCE = "mailerlite"
WEBHOOK_EVENTS = ["subscriber.unsubscribe", "subscriber.bounce", "subscriber.complaint",
                  "subscriber.update"]
KINDS = {
    "subscriber.unsubscribe": EventKind.UNSUBSCRIBED,
    "subscriber.bounce": EventKind.BOUNCED,
    "subscriber.complaint": EventKind.SPAM_REPORTED,
    "subscriber.update": EventKind.PROFILE_UPDATED,
    "subscriber.create": EventKind.SUBSCRIBED,
    "subscriber.add_to_group": EventKind.ADDED_TO_SEGMENT,
    "subscriber.remove_from_group": EventKind.REMOVED_FROM_SEGMENT,
}
IGNORED = frozenset({"campaign.sent", "subscriber.automation_triggered",
                     "subscriber.automation_complete"})


def parse_classic_subscriber(data: Mapping[str, Any], groups: Sequence[str] = ()) -> Subscriber:
    raw_fields = data.get("fields") or []
    fields = ({str(f.get("key")): f.get("value") for f in raw_fields if isinstance(f, Mapping)}
              if isinstance(raw_fields, list) else dict(raw_fields))
    return Subscriber(email=lower(data.get("email")) or "", id=str(data.get("id")),
                      status=EspStatus.parse(data.get("type") or data.get("status")),
                      segments=tuple(groups), fields=fields)


def parse_webhook(body: bytes, *, signature: str | None, secret: str) -> list[EspEvent]:
    """Classic signs with the account's API key (UNVERIFIED: hex or base64 HMAC-SHA256 both
    accepted). An empty secret verifies nothing."""
    if not signature:
        raise BadRequest("the signature header is missing", code="missing_signature")
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest() if secret else b""
    candidates = (digest.hex().encode(), base64.b64encode(digest)) if digest else ()
    # Bytes on both sides: `compare_digest` refuses a str with non-ASCII characters (a TypeError,
    # so a 500), and a header is whatever the caller sent.
    given = signature.strip().encode("utf-8", "replace")
    if not any(hmac.compare_digest(c, given) for c in candidates):
        raise Unauthorized("the signature does not match the body", code="bad_signature")
    return parse_events(load_json(body), body, SOURCE, KINDS, IGNORED)


class MailerLiteClassicProvider:
    kind: ClassVar[str] = "mailerlite_classic"
    family: ClassVar[str] = "mailerlite"  # admins choose "MailerLite"; the key tells which API
    service: ClassVar[str] = SERVICE
    label: ClassVar[str] = "MailerLite Classic"
    display_name: ClassVar[str] = "MailerLite"
    segment_noun: ClassVar[str] = "group"
    key_help: ClassVar[str] = "Integrations → Developer API"
    uses_lists: ClassVar[bool] = False
    answers_url_check: ClassVar[bool] = False
    echoes_own_unsubscribes: ClassVar[bool] = True  # no way to register hooks without them
    parse_webhook = staticmethod(parse_webhook)

    @staticmethod
    def recognises_key(api_key: str) -> bool | None:
        shape = key_shape(api_key)
        return None if shape is None else shape == "classic"

    @classmethod
    def from_key(cls, resources: Resources, api_key: str, *, list_id: str | None = None
                 ) -> MailerLiteClassicProvider:
        return cls(resources.http, base_url=resources.settings.mailerlite_classic_api_base_url,
                   api_key=api_key, limiter=resources.limiter)

    @classmethod
    def read_webhook(cls, connection: EspConnection, resources: Resources, *, body: bytes,
                     headers: Mapping[str, str]) -> list[EspEvent]:
        """Classic signs with the account's API key."""
        signature = headers.get("X-MailerLite-Signature") or headers.get("Signature")
        return parse_webhook(body, signature=signature,
                             secret=resources.vault.decrypt(connection.api_key_enc))

    def connection_fields(self) -> dict[str, Any]:
        return {"classic": True}

    def __init__(self, client: httpx2.AsyncClient, *, base_url: str, api_key: str,
                 limiter: RateLimiter | None = None) -> None:
        self.api = MailerLiteApi(client, base_url, api_key, classic=True, limiter=limiter)
        self._cache_key = (SERVICE, self.api.base_url, self.api.key_id)

    async def validate(self) -> str:
        try:
            await self.api.call("GET", "/groups", params={"limit": 1})
        except UpstreamUnauthorized:
            raise Unprocessable("MailerLite Classic did not accept this API key",
                                code="invalid_api_key") from None
        return self.label

    async def list_lists(self) -> list[EspList]:
        return []

    async def list_segments(self) -> list[Segment]:
        groups = await self.api.call("GET", "/groups", params={"limit": 1000})
        return [Segment(id=str(g["id"]), name=str(g.get("name", ""))) for g in groups or []]

    async def create_segment(self, name: str) -> Segment:
        for segment in await self.list_segments():
            if segment.name.casefold() == name.casefold():
                return segment
        group = await self.api.call("POST", "/groups", json={"name": name})
        return Segment(id=str(group["id"]), name=str(group.get("name", name)))

    async def ensure_fields(self, names: Sequence[str]) -> Mapping[str, str]:
        if not names:
            return {}
        known = cache.get(self.api.client, self._cache_key)
        if known is None:
            known = {}
            for item in await self.api.call("GET", "/fields") or []:
                known[str(item["key"])] = str(item["key"])
                known.setdefault(str(item.get("title", "")).casefold(), str(item["key"]))
            cache.put(self.api.client, self._cache_key, known)
        resolved: dict[str, str] = {}
        for name in names:
            key = resolve_field(name, known)
            if key is None:
                created = await self.api.call("POST", "/fields", json={"title": name, "type": "TEXT"})
                key = str(created["key"])
                known = {**known, key: key, name.casefold(): key}
                cache.put(self.api.client, self._cache_key, known)
            resolved[name] = key
        return resolved

    async def get_subscriber(self, email: str) -> Subscriber | None:
        address = quote(lower(email) or email, safe="@")
        try:
            data = await self.api.call("GET", f"/subscribers/{address}")
            groups = await self.api.call("GET", f"/subscribers/{address}/groups")
        except UpstreamNotFound:
            return None
        return parse_classic_subscriber(data, [str(g["id"]) for g in groups or []])

    async def _payload(self, data: SubscriberData) -> dict[str, Any]:
        present = {n: v for n, v in data.fields.items() if v is not None}
        keys = await self.ensure_fields(list(present))
        fields = {keys[n]: v for n, v in present.items()}
        payload: dict[str, Any] = {"email": lower(data.email), "resubscribe": False}
        if DEFAULT_KEYS["first_name"] in fields:
            payload["name"] = fields.pop(DEFAULT_KEYS["first_name"])
        if fields:
            payload["fields"] = fields
        return payload

    async def upsert(self, data: SubscriberData) -> Subscriber:
        """Status is never sent: Classic keeps an existing subscriber's `type`."""
        payload = await self._payload(data)
        subscriber = parse_classic_subscriber(await self.api.call("POST", "/subscribers",
                                                                  json=payload))
        await self._move(subscriber.email, data.add_segments, data.remove_segments)
        return subscriber

    async def _move(self, email: str, add: Sequence[str], remove: Sequence[str]) -> None:
        for group_id in dict.fromkeys(add):
            await self.api.call("POST", f"/groups/{group_id}/subscribers",
                                json={"email": email, "resubscribe": False})
        for group_id in dict.fromkeys(remove):
            with contextlib.suppress(UpstreamNotFound):
                await self.api.call("DELETE", f"/groups/{group_id}/subscribers/{quote(email, safe='@')}")

    async def set_membership(self, email: str, *, add: Sequence[str] = (),
                             remove: Sequence[str] = ()) -> None:
        await self._move(lower(email) or email, add, remove)

    async def unsubscribe(self, email: str) -> None:
        await self.api.call("POST", "/subscribers",
                            json={"email": lower(email), "type": "unsubscribed"})

    async def forget(self, email: str) -> None:
        with contextlib.suppress(UpstreamNotFound):
            await self.api.call("POST", f"/subscribers/{quote(lower(email) or email, safe='@')}/forget")

    async def register_webhook(self, url: str) -> Webhook:
        """Classic takes one event per webhook; the ids are kept comma-joined."""
        ids = []
        for event in WEBHOOK_EVENTS:
            hook = await self.api.call("POST", "/webhooks", json={"url": url, "event": event})
            ids.append(str(hook["id"]))
        return Webhook(id=",".join(ids), secret=None)

    async def delete_webhook(self, webhook_id: str) -> None:
        for one in filter(None, webhook_id.split(",")):
            with contextlib.suppress(UpstreamNotFound):
                await self.api.call("DELETE", f"/webhooks/{one}")

    async def bulk_upsert(self, items: Sequence[SubscriberData]) -> BulkResult:
        """One upsert per address: Classic's batch shapes are unverified, so none is guessed."""
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        for item in items:
            email = lower(item.email) or item.email
            try:
                await self.upsert(item)
            except PermanentRefusal as refusal:
                failed[email] = refusal.message
            else:
                succeeded.append(email)
        return BulkResult(succeeded=tuple(succeeded), failed=failed)

    async def bulk_set_membership(self, segment_id: str, *, add: Sequence[str] = (),
                                  remove: Sequence[str] = ()) -> BulkResult:
        if add:
            await self.api.call("POST", f"/groups/{segment_id}/subscribers/import", json={
                "subscribers": [{"email": lower(e)} for e in add], "resubscribe": False})
        await self._move_many(segment_id, remove)
        return BulkResult(succeeded=tuple(lower(e) or e for e in [*add, *remove]))

    async def _move_many(self, segment_id: str, remove: Sequence[str]) -> None:
        for email in remove:
            await self._move(lower(email) or email, (), (segment_id,))

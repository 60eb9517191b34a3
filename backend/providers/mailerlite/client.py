"""MailerLite, new API (connect.mailerlite.com/api, Bearer keys): groups are our segments.

Calls per operation are kept minimal: an upsert is one `POST /subscribers` carrying the fields and
the groups to add (the answer tells which groups the subscriber is in, so only real removals cost a
`DELETE`). Status is never sent on an upsert: new addresses become active by default and existing
ones keep theirs, so an opt-out can never be undone by us.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx2

from backend.errors import (
    Unprocessable,
    UpstreamNotFound,
    UpstreamUnauthorized,
)
from backend.providers import cache
from backend.providers.base import (
    Consent,
    EspEvent,
    EspList,
    Segment,
    Subscriber,
    SubscriberData,
    Webhook,
    lower,
    vendor_fields,
)
from backend.providers.mailerlite import webhooks
from backend.providers.mailerlite.api import SERVICE, MailerLiteApi, key_shape
from backend.providers.mailerlite.bulk import BulkOperations
from backend.providers.mailerlite.shapes import parse_group, parse_subscriber, parse_webhook_object
from backend.ratelimit import RateLimiter

if TYPE_CHECKING:
    from backend.models import EspConnection
    from backend.resources import Resources

# Neutral names → MailerLite default field keys (checked against `GET /fields`, never assumed).
DEFAULT_KEYS = {"first_name": "name", "last_name": "last_name", "phone": "phone",
                "company": "company"}
WEBHOOK_EVENTS = ["subscriber.unsubscribed", "subscriber.bounced", "subscriber.spam_reported",
                  "subscriber.updated", "subscriber.deleted"]
PAGE = 100


class MailerLiteProvider(BulkOperations):
    kind: ClassVar[str] = "mailerlite"
    family: ClassVar[str] = "mailerlite"
    service: ClassVar[str] = SERVICE
    label: ClassVar[str] = "MailerLite"
    display_name: ClassVar[str] = "MailerLite"
    segment_noun: ClassVar[str] = "group"
    key_help: ClassVar[str] = "Integrations → API"
    uses_lists: ClassVar[bool] = False
    answers_url_check: ClassVar[bool] = False
    echoes_own_unsubscribes: ClassVar[bool] = True  # no way to register hooks without them
    parse_webhook = staticmethod(webhooks.parse_webhook)

    @staticmethod
    def recognises_key(api_key: str) -> bool | None:
        shape = key_shape(api_key)
        return None if shape is None else shape == "jwt"

    @classmethod
    def from_key(cls, resources: Resources, api_key: str, *, list_id: str | None = None
                 ) -> MailerLiteProvider:
        return cls(resources.http, base_url=resources.settings.mailerlite_api_base_url,
                   api_key=api_key, limiter=resources.limiter)

    @classmethod
    def read_webhook(cls, connection: EspConnection, resources: Resources, *, body: bytes,
                     headers: Mapping[str, str]) -> list[EspEvent]:
        """Signed with the secret MailerLite gave when we registered the webhook."""
        secret = resources.vault.decrypt(connection.webhook_secret_enc or "") \
            if connection.webhook_secret_enc else ""
        return webhooks.parse_webhook(body, signature=headers.get("Signature"), secret=secret)

    def connection_fields(self) -> dict[str, Any]:
        return {}

    def __init__(self, client: httpx2.AsyncClient, *, base_url: str, api_key: str,
                 limiter: RateLimiter | None = None) -> None:
        self.api = MailerLiteApi(client, base_url, api_key, limiter=limiter)
        self._cache_key = (SERVICE, self.api.base_url, self.api.key_id)

    # --- account -------------------------------------------------------------------------

    async def validate(self) -> str:
        try:
            await self.api.call("GET", "/subscribers", params={"limit": 0})
        except UpstreamUnauthorized:
            raise Unprocessable("MailerLite did not accept this API key",
                                code="invalid_api_key") from None
        return self.label

    async def list_lists(self) -> list[EspList]:
        return []

    async def list_segments(self) -> list[Segment]:
        return [parse_group(g) for g in await self._pages("/groups", {})]

    async def create_segment(self, name: str) -> Segment:
        # Group names are not unique at MailerLite: reuse an existing one of the same name.
        for group in await self._pages("/groups", {"filter[name]": name}):
            if str(group.get("name", "")).casefold() == name.casefold():
                return parse_group(group)
        return parse_group((await self.api.call("POST", "/groups", json={"name": name}))["data"])

    async def _pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.api.call("GET", path, params={**params, "limit": PAGE, "page": page})
            items.extend(body.get("data") or [])
            meta = body.get("meta") or {}
            if page >= int(meta.get("last_page") or 1):
                return items
            page += 1

    # --- fields --------------------------------------------------------------------------

    async def ensure_fields(self, names: Sequence[str]) -> Mapping[str, str]:
        if not names:
            return {}
        known = await self._field_keys()
        resolved: dict[str, str] = {}
        for name in names:
            key = resolve_field(name, known)
            if key is None:
                body = await self.api.call("POST", "/fields", json={"name": name, "type": "text"})
                key = str(body["data"]["key"])
                known = {**known, key: key, name.casefold(): key}
                cache.put(self.api.client, self._cache_key, known)
            resolved[name] = key
        return resolved

    async def _field_keys(self) -> dict[str, str]:
        known = cache.get(self.api.client, self._cache_key)
        if known is None:
            known = {}
            for item in await self._pages("/fields", {}):
                known[str(item["key"])] = str(item["key"])
                known.setdefault(str(item.get("name", "")).casefold(), str(item["key"]))
            cache.put(self.api.client, self._cache_key, known)
        return known

    # --- subscribers ---------------------------------------------------------------------

    async def get_subscriber(self, email: str) -> Subscriber | None:
        try:
            body = await self.api.call("GET", f"/subscribers/{quote(lower(email) or email, safe='@')}")
        except UpstreamNotFound:
            return None
        return parse_subscriber(body["data"])

    async def upsert(self, data: SubscriberData) -> Subscriber:
        payload: dict[str, Any] = {"email": lower(data.email)}
        fields = await vendor_fields(self, data.fields)
        if fields:
            payload["fields"] = fields
        if data.add_segments:
            payload["groups"] = list(dict.fromkeys(data.add_segments))
        if data.consent is Consent.PENDING and await self.get_subscriber(data.email) is None:
            payload["status"] = "unconfirmed"  # only ever for an address MailerLite lacks
        status, body = await self.api.request("POST", "/subscribers", json=payload)
        subscriber = parse_subscriber(body["data"], created=status == 201)
        await self._unassign(subscriber, data.remove_segments, known_groups="groups" in body["data"])
        return subscriber

    async def _unassign(self, subscriber: Subscriber, groups: Sequence[str], *,
                        known_groups: bool) -> None:
        for group_id in dict.fromkeys(groups):
            if known_groups and group_id not in subscriber.segments:
                continue
            with contextlib.suppress(UpstreamNotFound):  # not in it: the state we wanted
                await self.api.call("DELETE", f"/subscribers/{subscriber.id}/groups/{group_id}")

    async def set_membership(self, email: str, *, add: Sequence[str] = (),
                             remove: Sequence[str] = ()) -> None:
        subscriber = await self.get_subscriber(email)
        if subscriber is None:
            if add:
                raise UpstreamNotFound(f"MailerLite has no subscriber {email}", service=SERVICE)
            return
        for group_id in dict.fromkeys(add):
            if group_id not in subscriber.segments:
                await self.api.call("POST", f"/subscribers/{subscriber.id}/groups/{group_id}")
        await self._unassign(subscriber, remove, known_groups=True)

    async def unsubscribe(self, email: str) -> None:
        await self.api.call("POST", "/subscribers",
                            json={"email": lower(email), "status": "unsubscribed"})

    async def forget(self, email: str) -> None:
        subscriber = await self.get_subscriber(email)
        if subscriber is not None:
            await self.api.call("POST", f"/subscribers/{subscriber.id}/forget")

    # --- webhooks ------------------------------------------------------------------------

    async def register_webhook(self, url: str) -> Webhook:
        # `subscriber.deleted` is only delivered to batchable webhooks (A.8).
        body = await self.api.call("POST", "/webhooks", json={
            "name": "mailsync", "url": url, "events": WEBHOOK_EVENTS, "enabled": True,
            "batchable": True})
        return parse_webhook_object(body["data"])

    async def delete_webhook(self, webhook_id: str) -> None:
        with contextlib.suppress(UpstreamNotFound):
            await self.api.call("DELETE", f"/webhooks/{webhook_id}")


def resolve_field(name: str, known: Mapping[str, str]) -> str | None:
    candidate = DEFAULT_KEYS.get(name, name)
    return known.get(candidate) or known.get(name.casefold())

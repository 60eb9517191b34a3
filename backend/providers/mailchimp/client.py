"""Mailchimp Marketing API v3: one audience per connection, tags are our segments (id == name).

Upserts are `PUT /lists/{id}/members/{md5}` with `status_if_new` only, so an existing member's
status (unsubscribed, cleaned, …) is never touched. Tag changes go in one `POST …/tags`, and only
when the member's tags (returned by the PUT) differ from what we want.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import httpx2

from backend.errors import (
    PermanentRefusal,
    Unprocessable,
    UpstreamNotFound,
    UpstreamUnauthorized,
)
from backend.providers import cache
from backend.providers.base import (
    EspEvent,
    EspList,
    EspStatus,
    Segment,
    Subscriber,
    SubscriberData,
    Webhook,
    lower,
    vendor_fields,
)
from backend.providers.mailchimp import webhooks
from backend.providers.mailchimp.api import SERVICE, MailchimpApi, subscriber_hash
from backend.providers.mailchimp.bulk import BulkOperations, parse_member
from backend.ratelimit import RateLimiter

if TYPE_CHECKING:
    from backend.models import EspConnection
    from backend.resources import Resources

MERGE_TAGS = {"first_name": "FNAME", "last_name": "LNAME", "phone": "PHONE", "company": "COMPANY",
              "kommo_contact_id": "KOMMOCID", "kommo_lead_id": "KOMMOLID"}
MERGE_NAMES = {"COMPANY": "Company", "KOMMOCID": "Kommo contact ID", "KOMMOLID": "Kommo lead ID"}
MAX_TAG_LENGTH = 10
MAX_MERGE_FIELDS = 30
WEBHOOK_EVENTS = {"subscribe": False, "unsubscribe": True, "profile": True, "cleaned": True,
                  "upemail": True, "campaign": False}
WEBHOOK_SOURCES = {"user": True, "admin": True, "api": False}  # no echo of our own writes


def merge_tag(name: str) -> str:
    tag = MERGE_TAGS.get(name, name).upper()
    if len(tag) > MAX_TAG_LENGTH or not tag.replace("_", "").isalnum():
        raise PermanentRefusal(f"Mailchimp merge tags are at most {MAX_TAG_LENGTH} letters or "
                               f"digits; {name!r} cannot be one", code="invalid_merge_tag",
                               service=SERVICE)
    return tag


class MailchimpProvider(BulkOperations):
    kind: ClassVar[str] = "mailchimp"
    family: ClassVar[str] = "mailchimp"
    service: ClassVar[str] = SERVICE
    display_name: ClassVar[str] = "Mailchimp"
    segment_noun: ClassVar[str] = "tag"
    key_help: ClassVar[str] = "Profile → Extras → API keys"
    uses_lists: ClassVar[bool] = True  # members live in the audience the admin chooses
    answers_url_check: ClassVar[bool] = True  # Mailchimp GETs the URL before it accepts it
    echoes_own_unsubscribes: ClassVar[bool] = False  # WEBHOOK_SOURCES leaves API changes out
    parse_webhook = staticmethod(webhooks.parse_webhook)

    @staticmethod
    def recognises_key(api_key: str) -> bool | None:
        return None  # the only Mailchimp API: nothing to choose between

    @classmethod
    def from_key(cls, resources: Resources, api_key: str, *, list_id: str | None = None
                 ) -> MailchimpProvider:
        return cls(resources.http, base_url=resources.settings.mailchimp_api_base_url,
                   api_key=api_key, list_id=list_id, limiter=resources.limiter)

    @classmethod
    def read_webhook(cls, connection: EspConnection, resources: Resources, *, body: bytes,
                     headers: Mapping[str, str]) -> list[EspEvent]:
        """Unsigned: the unguessable hook key in the URL is the secret."""
        return webhooks.parse_webhook(body)

    def connection_fields(self) -> dict[str, Any]:
        return {"dc": self.dc}

    def __init__(self, client: httpx2.AsyncClient, *, base_url: str, api_key: str,
                 list_id: str | None = None, limiter: RateLimiter | None = None,
                 quiet_tags: bool = False) -> None:
        self.api = MailchimpApi(client, base_url, api_key, limiter=limiter)
        self.list_id = list_id
        self.quiet_tags = quiet_tags  # is_syncing: tag changes fire no automations
        self._cache_key = (SERVICE, self.api.base_url, self.api.key_id, list_id or "")

    @property
    def dc(self) -> str:
        return self.api.dc

    def _list(self) -> str:
        if not self.list_id:
            raise Unprocessable("choose a Mailchimp audience first", code="list_required")
        return f"/lists/{self.list_id}"

    def _member(self, email: str) -> str:
        return f"{self._list()}/members/{subscriber_hash(email)}"

    # --- account -------------------------------------------------------------------------

    async def validate(self) -> str:
        """One call: the audience when one is chosen (proves key and list), else `/ping`."""
        try:
            if self.list_id:
                body = await self.api.call("GET", self._list(), params={"fields": "id,name"})
                return f"Mailchimp ({body.get('name', self.list_id)})"
            await self.api.call("GET", "/ping")
        except UpstreamUnauthorized:
            raise Unprocessable("Mailchimp did not accept this API key",
                                code="invalid_api_key") from None
        except UpstreamNotFound:
            raise Unprocessable("this Mailchimp account has no such audience",
                                code="invalid_list") from None
        return "Mailchimp"

    async def list_lists(self) -> list[EspList]:
        body = await self.api.call("GET", "/lists", params={
            "count": 1000, "fields": "lists.id,lists.name,lists.stats.member_count,total_items"})
        return [EspList(id=str(a["id"]), name=str(a.get("name", "")),
                        member_count=int((a.get("stats") or {}).get("member_count") or 0))
                for a in body.get("lists") or []]

    async def list_segments(self) -> list[Segment]:
        return [Segment(id=name, name=name) for name in await self._tag_ids()]

    async def _tag_ids(self) -> dict[str, str]:
        """Tag name → its static segment id (needed for the bulk member endpoints)."""
        found: dict[str, str] = {}
        offset = 0
        while True:
            body = await self.api.call("GET", f"{self._list()}/segments", params={
                "type": "static", "count": 1000, "offset": offset,
                "fields": "segments.id,segments.name,total_items"})
            for segment in body.get("segments") or []:
                found[str(segment["name"])] = str(segment["id"])
            offset += 1000
            if offset >= int(body.get("total_items") or 0):
                return found

    async def create_segment(self, name: str) -> Segment:
        existing = await self._tag_ids()
        if name not in existing:
            await self._create_tag(name)
        return Segment(id=name, name=name)

    async def _create_tag(self, name: str) -> str:
        body = await self.api.call("POST", f"{self._list()}/segments",
                                   json={"name": name, "static_segment": []})
        return str(body["id"])

    # --- merge fields --------------------------------------------------------------------

    async def ensure_fields(self, names: Sequence[str]) -> Mapping[str, str]:
        if not names:
            return {}
        wanted = {name: merge_tag(name) for name in names}
        known = await self._merge_tags()
        for tag in dict.fromkeys(wanted.values()):
            if tag not in known:
                await self._create_merge_field(tag, known)
                known = known | {tag}
                cache.put(self.api.client, self._cache_key, known)
        return wanted

    async def _merge_tags(self) -> frozenset[str]:
        known = cache.get(self.api.client, self._cache_key)
        if known is None:
            body = await self.api.call("GET", f"{self._list()}/merge-fields",
                                       params={"count": 1000, "fields": "merge_fields.tag"})
            known = frozenset(str(f["tag"]) for f in body.get("merge_fields") or [])
            cache.put(self.api.client, self._cache_key, known)
        return known

    async def _create_merge_field(self, tag: str, known: frozenset[str]) -> None:
        # Checked before asking, so the admin reads which field did not fit, not a vendor 400.
        if len(known - {"EMAIL"}) >= MAX_MERGE_FIELDS:
            raise PermanentRefusal(
                f"this Mailchimp audience already has {MAX_MERGE_FIELDS} merge fields, the most "
                f"Mailchimp allows; delete one in Mailchimp or drop {tag} from the field map",
                code="merge_field_limit", service=SERVICE)
        await self.api.call("POST", f"{self._list()}/merge-fields", json={
            "tag": tag, "name": MERGE_NAMES.get(tag, tag.title()), "type": "text",
            "public": False})

    # --- members -------------------------------------------------------------------------

    async def get_subscriber(self, email: str) -> Subscriber | None:
        try:
            return parse_member(await self.api.call("GET", self._member(email)))
        except UpstreamNotFound:
            return None

    def _member_body(self, data: SubscriberData, merge_fields: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"email_address": lower(data.email), "status_if_new": data.consent.value}
        if merge_fields:
            body["merge_fields"] = merge_fields
        return body

    async def upsert(self, data: SubscriberData) -> Subscriber:
        if data.fields_current and (data.add_segments or data.remove_segments):
            try:  # tags alone: one call instead of PUT + tags
                await self._tag(data.email, None, data.add_segments, data.remove_segments)
                return Subscriber(email=lower(data.email) or data.email, id=None,
                                  status=EspStatus.SUBSCRIBED, segments=tuple(data.add_segments))
            except UpstreamNotFound:
                pass  # deleted at Mailchimp meanwhile: write it again in full
        body = self._member_body(data, await vendor_fields(self, data.fields))
        member = parse_member(await self.api.call("PUT", self._member(data.email), json=body))
        await self._tag(data.email, member, data.add_segments, data.remove_segments)
        return member

    async def _tag(self, email: str, member: Subscriber | None, add: Sequence[str],
                   remove: Sequence[str]) -> None:
        have = set(member.segments) if member is not None else None
        changes = [{"name": t, "status": "active"} for t in dict.fromkeys(add)
                   if have is None or t not in have]
        changes += [{"name": t, "status": "inactive"} for t in dict.fromkeys(remove)
                    if t not in add and (have is None or t in have)]
        if changes:
            await self.api.call("POST", f"{self._member(email)}/tags",
                                json={"tags": changes, "is_syncing": self.quiet_tags})

    async def set_membership(self, email: str, *, add: Sequence[str] = (),
                             remove: Sequence[str] = ()) -> None:
        try:
            await self._tag(email, None, add, remove)
        except UpstreamNotFound:
            if add:
                raise

    async def unsubscribe(self, email: str) -> None:
        await self.api.call("PUT", self._member(email), json={
            "email_address": lower(email), "status_if_new": "unsubscribed",
            "status": "unsubscribed"})

    async def forget(self, email: str) -> None:
        with contextlib.suppress(UpstreamNotFound):
            await self.api.call("POST", f"{self._member(email)}/actions/delete-permanent")

    # --- webhooks ------------------------------------------------------------------------

    async def register_webhook(self, url: str) -> Webhook:
        body = await self.api.call("POST", f"{self._list()}/webhooks", json={
            "url": url, "events": WEBHOOK_EVENTS, "sources": WEBHOOK_SOURCES})
        return Webhook(id=str(body["id"]), secret=None)

    async def delete_webhook(self, webhook_id: str) -> None:
        with contextlib.suppress(UpstreamNotFound):
            await self.api.call("DELETE", f"{self._list()}/webhooks/{webhook_id}")

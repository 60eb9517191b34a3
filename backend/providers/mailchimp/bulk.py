"""Mailchimp's bulk side: list batches of up to 500 members (`POST /lists/{id}`) and static
segment calls of up to 500 additions and removals. A mixin of `MailchimpProvider`, which gives it
`api`, the audience and the member and tag helpers; kept apart so each file stays readable."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from backend.errors import UpstreamNotFound, UpstreamRateLimited, UpstreamUnavailable
from backend.providers import cache
from backend.providers.base import BulkResult, EspStatus, Subscriber, SubscriberData, lower, vendor_fields

BULK_MAX = 500
FEW = 10  # addresses read one by one, whatever the audience's size
SCAN_PAGE = 1000
SCAN_FIELDS = ("members.id,members.email_address,members.status,members.tags,members.merge_fields,"
               "total_items")


def parse_member(data: Mapping[str, Any]) -> Subscriber:
    tags = data.get("tags") or ()
    return Subscriber(email=lower(data.get("email_address")) or "", id=str(data.get("id") or ""),
                      status=EspStatus.parse(data.get("status")),
                      segments=tuple(str(t["name"]) for t in tags if isinstance(t, Mapping)),
                      fields=dict(data.get("merge_fields") or {}))


class BulkOperations:
    """Relies on the provider's `api`, `_cache_key`, `_list`, `_member_body`, `_tag_ids`,
    `_create_tag` and `get_subscriber`."""

    api: Any
    _cache_key: tuple[str, ...]

    async def lookup(self, emails: Sequence[str]) -> Mapping[str, Subscriber]:
        """Mailchimp has no look-up by many addresses: reading the audience's member list
        (1,000 a call) when that takes fewer calls than one read per address."""
        wanted = list(dict.fromkeys(lower(e) or e for e in emails))
        if len(wanted) > FEW:
            first = await self._members_page(0)
            pages = math.ceil(int(first.get("total_items") or 0) / SCAN_PAGE)
            if pages <= len(wanted):
                rest = await asyncio.gather(*(self._members_page(n * SCAN_PAGE) for n in range(1, pages)))
                chosen = set(wanted)
                return {m.email: m for body in (first, *rest) for m in map(parse_member, body["members"])
                        if m.email in chosen}
        found = await asyncio.gather(*(self.get_subscriber(e) for e in wanted))
        return {s.email: s for s in found if s is not None}

    async def _members_page(self, offset: int) -> dict[str, Any]:
        return await self.api.call("GET", f"{self._list()}/members", params={
            "count": SCAN_PAGE, "offset": offset, "fields": SCAN_FIELDS})

    async def bulk_upsert(self, items: Sequence[SubscriberData]) -> BulkResult:
        """`POST /lists/{id}` with up to 500 members, `status_if_new` only; tags are added by the
        same call; the tags to remove that a member turns out to have go in one segment call per
        tag (`members_to_remove`)."""
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        statuses: dict[str, EspStatus] = {}
        strays: dict[str, list[str]] = {}
        retry: dict[str, str] = {}
        retry_after: float | None = None
        created: set[str] = set()
        for start in range(0, len(items), BULK_MAX):
            chunk = items[start:start + BULK_MAX]
            members = []
            for item in chunk:
                member = self._member_body(item, await vendor_fields(self, item.fields))
                if item.add_segments:
                    member["tags"] = list(item.add_segments)
                members.append(member)
            try:
                body = await self.api.call("POST", self._list(), json={
                    "members": members, "update_existing": True, "sync_tags": False})
            except (UpstreamRateLimited, UpstreamUnavailable) as exc:
                # What was written stays written; only the rest is tried again, when told.
                retry = {lower(i.email) or i.email: exc.message for i in items[start:]}
                retry_after = exc.retry_after
                break
            for error in body.get("errors") or []:
                failed[lower(error.get("email_address")) or ""] = str(error.get("error"))
            unwanted = {lower(item.email) or item.email: set(item.remove_segments) for item in chunk}
            created.update(lower(m.get("email_address")) or "" for m in body.get("new_members") or [])
            for done in [*(body.get("new_members") or []), *(body.get("updated_members") or [])]:
                email = lower(done.get("email_address")) or ""
                succeeded.append(email)
                statuses[email] = EspStatus.parse(done.get("status"))
                tags = {str(t.get("name")) for t in done.get("tags") or () if isinstance(t, Mapping)}
                for tag in tags & unwanted.get(email, set()):
                    strays.setdefault(tag, []).append(email)
        for tag, emails in strays.items():
            await self.bulk_set_membership(tag, remove=emails)
        return BulkResult(succeeded=tuple(succeeded), failed=failed, retry=retry,
                          retry_after=retry_after, statuses=statuses, created=frozenset(created))

    async def bulk_set_membership(self, segment_id: str, *, add: Sequence[str] = (),
                                  remove: Sequence[str] = ()) -> BulkResult:
        try:
            return await self._set_membership(await self._static_id(segment_id), add, remove)
        except UpstreamNotFound:  # the tag was deleted in Mailchimp since we read its id
            cache.drop(self.api.client, self._tag_cache_key)
            return await self._set_membership(await self._static_id(segment_id), add, remove)

    @property
    def _tag_cache_key(self) -> tuple[str, ...]:
        return (*self._cache_key, "tag-ids")

    async def _static_id(self, name: str) -> str:
        """The tag's static segment id, kept per process so a bulk move of thousands reads the
        audience's tags once, not once per batch."""
        ids = cache.get(self.api.client, self._tag_cache_key) or {}
        if name not in ids:
            ids = await self._tag_ids()
            if name not in ids:
                ids = {**ids, name: await self._create_tag(name)}
            cache.put(self.api.client, self._tag_cache_key, ids)
        return ids[name]

    async def _set_membership(self, static_id: str, add: Sequence[str],
                              remove: Sequence[str]) -> BulkResult:
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        adds, removes = list(add), list(remove)
        while adds or removes:
            body = await self.api.call("POST", f"{self._list()}/segments/{static_id}", json={
                "members_to_add": [lower(e) for e in adds[:BULK_MAX]],
                "members_to_remove": [lower(e) for e in removes[:BULK_MAX]]})
            adds, removes = adds[BULK_MAX:], removes[BULK_MAX:]
            for member in [*(body.get("members_added") or []), *(body.get("members_removed") or [])]:
                succeeded.append(lower(member.get("email_address")) or "")
            for error in body.get("errors") or []:
                for email in error.get("email_addresses") or []:
                    failed[lower(email) or ""] = str(error.get("error"))
        return BulkResult(succeeded=tuple(succeeded), failed=failed)

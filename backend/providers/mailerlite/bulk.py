"""MailerLite's bulk side (new API): many addresses per call through `/batch` (50 requests,
each a normal call) and group imports. A mixin of `MailerLiteProvider`, which gives it `api` and
`ensure_fields`; kept apart so each file stays readable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from backend.errors import UpstreamRateLimited, UpstreamUnavailable
from backend.providers.base import (
    BulkResult,
    Consent,
    EspStatus,
    Subscriber,
    SubscriberData,
    lower,
    vendor_fields,
)
from backend.providers.mailerlite.api import MailerLiteApi
from backend.providers.mailerlite.shapes import parse_subscriber

BATCH_MAX = 50


class BulkOperations:
    api: MailerLiteApi

    async def lookup(self, emails: Sequence[str]) -> Mapping[str, Subscriber]:
        """`/batch` of up to 50 look-ups per call."""
        found: dict[str, Subscriber] = {}
        wanted = list(dict.fromkeys(lower(e) or e for e in emails))
        for start in range(0, len(wanted), BATCH_MAX):
            answers = await self._batch([{"method": "GET", "path": f"api/subscribers/{quote(e, safe='@')}"}
                                         for e in wanted[start:start + BATCH_MAX]])
            for answer in answers:
                if answer.get("code") == 200 and isinstance(answer.get("body"), dict):
                    subscriber = parse_subscriber(answer["body"]["data"])
                    found[subscriber.email] = subscriber
        return found

    async def bulk_upsert(self, items: Sequence[SubscriberData]) -> BulkResult:
        """`POST /batch` of up to 50 upserts per call, then one batch of group removals."""
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        retry: dict[str, str] = {}
        statuses: dict[str, EspStatus] = {}
        created: set[str] = set()
        # Double opt-in applies to addresses MailerLite lacks only: find which those are.
        known = await self.lookup([i.email for i in items if i.consent is Consent.PENDING])
        retry_after = None
        for start in range(0, len(items), BATCH_MAX):
            chunk = items[start:start + BATCH_MAX]
            requests = [{"method": "POST", "path": "api/subscribers",
                         "body": await self._bulk_body(item, known)} for item in chunk]
            try:
                answers = await self._batch(requests)
            except (UpstreamRateLimited, UpstreamUnavailable) as exc:
                # What was written stays written; only the rest is tried again, when told.
                retry.update({lower(i.email) or i.email: exc.message for i in items[start:]})
                retry_after = exc.retry_after
                break
            removals = []
            for item, answer in zip(chunk, answers, strict=True):
                email = lower(item.email) or item.email
                data = answer.get("body", {}).get("data", {}) if isinstance(answer.get("body"), dict) else {}
                if answer.get("code") in (200, 201):
                    succeeded.append(email)
                    if answer.get("code") == 201:
                        created.add(email)
                    statuses[email] = EspStatus.parse(data.get("status"))
                    removals += _removals(item, data)
                elif answer.get("code") == 429 or int(answer.get("code") or 500) >= 500:
                    retry[email] = _answer_message(answer)
                else:
                    failed[email] = _answer_message(answer)
            if removals:
                await self._batch(removals)
        return BulkResult(succeeded=tuple(succeeded), failed=failed, retry=retry,
                          retry_after=retry_after, statuses=statuses, created=frozenset(created))

    async def _bulk_body(self, item: SubscriberData, known: Mapping[str, Subscriber]) -> dict[str, Any]:
        body: dict[str, Any] = {"email": lower(item.email)}
        if item.consent is Consent.PENDING and (lower(item.email) or item.email) not in known:
            body["status"] = "unconfirmed"
        if fields := await vendor_fields(self, item.fields):
            body["fields"] = fields
        if item.add_segments:
            body["groups"] = list(item.add_segments)
        return body

    async def _batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = await self.api.call("POST", "/batch", json={"requests": requests})
        return list(body.get("responses") or [])

    async def bulk_set_membership(self, segment_id: str, *, add: Sequence[str] = (),
                                  remove: Sequence[str] = ()) -> BulkResult:
        """Adds: one group import (it skips opted-out addresses, never revives them). Removals:
        a batch of look-ups, then a batch of unassigns, per 50 addresses."""
        if add:
            await self.api.call("POST", f"/groups/{segment_id}/import-subscribers", json={
                "subscribers": [{"email": lower(e)} for e in add]})
        for start in range(0, len(remove), BATCH_MAX):
            chunk = [lower(e) or e for e in remove[start:start + BATCH_MAX]]
            found = await self._batch([{"method": "GET", "path": f"api/subscribers/{quote(e, safe='@')}"}
                                       for e in chunk])
            deletes = [{"method": "DELETE",
                        "path": f"api/subscribers/{a['body']['data']['id']}/groups/{segment_id}"}
                       for a in found if a.get("code") == 200]
            if deletes:
                await self._batch(deletes)
        return BulkResult(succeeded=tuple(lower(e) or e for e in [*add, *remove]))


def _removals(item: SubscriberData, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not item.remove_segments or "id" not in data:
        return []
    current = {str(g["id"]) for g in data.get("groups") or () if isinstance(g, Mapping)}
    return [{"method": "DELETE", "path": f"api/subscribers/{data['id']}/groups/{g}"}
            for g in dict.fromkeys(item.remove_segments)
            if "groups" not in data or g in current]


def _answer_message(answer: Mapping[str, Any]) -> str:
    body = answer.get("body") or {}
    message = str(body.get("message") or f"MailerLite answered {answer.get('code')}")
    errors = body.get("errors")
    if isinstance(errors, dict):
        details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in errors.items())
        message = f"{message} ({details})"
    return message

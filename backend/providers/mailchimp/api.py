"""One authenticated call to Mailchimp, within the per-key connection budget, errors mapped.

Mailchimp allows 10 simultaneous connections per user (B.2). Every call holds one of 10 permits
per key from the deployment's limiter: rows in the database shared by all processes on
PostgreSQL, a semaphore in the single SQLite process. A 429 that still slips through is a
retry, never a lost write.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import weakref
from typing import Any

import httpx2

from backend import http
from backend.errors import (
    PermanentRefusal,
    Unprocessable,
    UpstreamError,
    UpstreamUnavailable,
)
from backend.ratelimit import LocalRateLimiter, RateLimiter

SERVICE = "mailchimp"
MAX_CONCURRENT = 10
_DC = re.compile(r"-([a-z]{2,4}\d{1,3})$")
# Titles that refuse one contact for good (B.3); "Invalid Resource" only with these words.
PERMANENT_TITLES = ("member in compliance state", "forgotten email not subscribed")
FAKE_WORDS = ("looks fake", "fake or invalid", "real email", "signed up to a lot of lists")

# Per event loop (a semaphore belongs to one loop), per key.
_SEMAPHORES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary())


def data_centre(api_key: str) -> str:
    match = _DC.search(api_key.strip())
    if match is None:
        raise Unprocessable("a Mailchimp API key ends with its data centre, like -us21",
                            code="invalid_api_key")
    return match.group(1)


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def _semaphore(key_id: str) -> asyncio.Semaphore:
    per_key = _SEMAPHORES.setdefault(asyncio.get_running_loop(), {})
    if key_id not in per_key:
        per_key[key_id] = asyncio.Semaphore(MAX_CONCURRENT)
    return per_key[key_id]


class MailchimpApi:
    def __init__(self, client: httpx2.AsyncClient, base_url_template: str, api_key: str, *,
                 limiter: RateLimiter | LocalRateLimiter | None = None) -> None:
        self.dc = data_centre(api_key)
        self.base_url = base_url_template.replace("{dc}", self.dc).rstrip("/")
        self.client = client
        self._auth = httpx2.BasicAuth("mailsync", api_key)
        self._limiter = limiter
        self.key_id = key_hash(api_key)

    async def call(self, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None) -> Any:
        permit = (self._limiter.slot(f"{SERVICE}:{self.key_id}", MAX_CONCURRENT)
                  if self._limiter is not None else _semaphore(self.key_id))
        async with permit:
            response = await http.send(self.client, method, self.base_url + path,
                                       service=SERVICE, auth=self._auth, json=json, params=params,
                                       headers={"Accept": "application/json"})
        if response.status_code >= 400:
            raise error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise UpstreamUnavailable("Mailchimp answered with a body that is not JSON",
                                      service=SERVICE, status=response.status_code) from None


def problem(response: httpx2.Response) -> tuple[str, str]:
    """(title, detail) of an application/problem+json body; at high volume there may be none."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if not isinstance(body, dict):
        return "", str(body)[:300]
    detail = str(body.get("detail") or "")
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        detail += " " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors
                                  if isinstance(e, dict))
    return str(body.get("title") or ""), detail.strip()


def error_from(response: httpx2.Response) -> UpstreamError:
    title, detail = problem(response)
    message = f"{title}: {detail}" if title and detail else title or detail
    lowered = f"{title} {detail}".lower()
    if response.status_code == 400 and (title.lower() in PERMANENT_TITLES
                                        or any(w in lowered for w in FAKE_WORDS)):
        return PermanentRefusal(message, service=SERVICE, status=400)
    return http.error_for(response, service=SERVICE, message=message)


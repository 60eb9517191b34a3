"""One authenticated, budgeted call to MailerLite (new or Classic), errors mapped at the edge.

Budget: 120 requests/min per key (A.2). The shared database bucket refills at 110/min with a
burst of 10, so no 60-second window can see more than 120 of our calls even across processes.
`X-RateLimit-Remaining: 0` on any answer parks the key until the minute is over, without
spending a call that would only come back 429; a 429 parks it for its `Retry-After` (a minute
without one). Parked means paused in the shared limiter, so every process waits.
"""

from __future__ import annotations

import hashlib
import re
import time
import weakref
from typing import Any

import httpx2

from backend import http
from backend.errors import UpstreamError, UpstreamRateLimited, UpstreamUnavailable
from backend.ratelimit import RateLimiter

SERVICE = "mailerlite"
RATE_PER_SECOND = 110 / 60
BURST = 10
WINDOW_SECONDS = 60.0

# Per HTTP client (one per process): key hash → monotonic time until which MailerLite told us
# the key's budget is spent.
_EXHAUSTED: weakref.WeakKeyDictionary[httpx2.AsyncClient, dict[str, float]] = weakref.WeakKeyDictionary()


CLASSIC_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
JWT_KEY = re.compile(r"^eyJ[\w-]*\.[\w-]+\.[\w-]+$")


def key_shape(api_key: str) -> str | None:
    """"classic" (32 hex characters), "jwt" (the new API's keys) or None when unsure."""
    if CLASSIC_KEY.match(api_key):
        return "classic"
    return "jwt" if JWT_KEY.match(api_key) else None


def key_hash(api_key: str) -> str:
    """Budgets and caches are keyed on this, never on the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


class MailerLiteApi:
    def __init__(self, client: httpx2.AsyncClient, base_url: str, api_key: str, *,
                 classic: bool = False, limiter: RateLimiter | None = None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.classic = classic
        self._limiter = limiter
        self.key_id = key_hash(api_key)

    def _headers(self) -> dict[str, str]:
        auth = ({"X-MailerLite-ApiKey": self._api_key} if self.classic
                else {"Authorization": f"Bearer {self._api_key}"})
        return {**auth, "Accept": "application/json"}

    async def call(self, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None) -> Any:
        return (await self.request(method, path, json=json, params=params))[1]

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, parsed body or None); 4xx/5xx raise."""
        await self._take_budget()
        response = await http.send(
            self.client, method, self.base_url + path, service=SERVICE, headers=self._headers(),
            json=json, params=params)
        await self._note_remaining(response)
        if response.status_code >= 400:
            error = error_from(response)
            if response.status_code == 429 and not _import_limit(error.message):
                error.retry_after = error.retry_after if error.retry_after is not None else WINDOW_SECONDS
                await self._park(error.retry_after)
            raise error
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            raise UpstreamUnavailable("MailerLite answered with a body that is not JSON",
                                      service=SERVICE, status=response.status_code) from None

    async def _take_budget(self) -> None:
        until = _EXHAUSTED.get(self.client, {}).get(self.key_id, 0.0)
        left = until - time.monotonic()
        if left > 0:
            raise UpstreamRateLimited("MailerLite says the budget of this key is spent "
                                      "(X-RateLimit-Remaining: 0)", service=SERVICE,
                                      retry_after=round(left, 3))
        if self._limiter is not None:
            await self._limiter.acquire(f"{SERVICE}:{self.key_id}", rate=RATE_PER_SECOND,
                                        burst=BURST, service=SERVICE)

    async def _note_remaining(self, response: httpx2.Response) -> None:
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip() == "0" and response.status_code != 429:
            await self._park(WINDOW_SECONDS)
        elif remaining is not None:
            _EXHAUSTED.get(self.client, {}).pop(self.key_id, None)

    async def _park(self, seconds: float) -> None:
        """No call with this key for `seconds`: in every process through the shared limiter,
        else (no limiter) in this one."""
        if self._limiter is not None:
            await self._limiter.pause(f"{SERVICE}:{self.key_id}", seconds)
        else:
            _EXHAUSTED.setdefault(self.client, {})[self.key_id] = time.monotonic() + seconds


def vendor_message(response: httpx2.Response) -> str:
    """Laravel bodies: `message` plus `errors` {field: [messages]} → one readable line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    message = body.get("message")
    if not message and isinstance(body.get("error"), dict):  # Classic: {"error": {"message"}}
        message = body["error"].get("message")
    message = str(message or "")
    details = body.get("errors")
    if isinstance(details, dict):
        parts = [f"{field}: {' '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
                 for field, msgs in details.items()]
        message = f"{message} ({'; '.join(parts)})" if message else "; ".join(parts)
    return message or f"MailerLite answered {response.status_code}"


def _import_limit(message: str) -> bool:
    """The 5-imports-a-minute rule, which leaves the rest of the key's budget usable."""
    return "import" in message.lower()


def error_from(response: httpx2.Response) -> UpstreamError:
    text = vendor_message(response)
    if response.status_code == 429 and _import_limit(text):
        text = f"{text} (MailerLite allows 5 imports per minute)"
    return http.error_for(response, service=SERVICE, message=text)


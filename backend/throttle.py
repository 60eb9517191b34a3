"""Limits on what anonymous callers can make this process do (docs/SECURITY.md).

Every OAuth callback that passes our checks sends one token request, carrying our client secret,
to Kommo, and Kommo limits and blocks by IP: a flood of callbacks must not become a flood of
token requests from our shared address. The same goes for password guesses at `/admin`.

The state is per process and in memory: N web processes allow N times the figures below, and a
restart forgets them. The limits are a brake, not an account of who did what.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.errors import MailsyncError

Clock = Callable[[], float]

# Token requests (code exchanges, disconnect checks) anonymous callers can cause, per process.
TOKEN_REQUESTS_PER_SECOND, TOKEN_REQUESTS_BURST = 5.0, 10
# Code exchanges per caller (IPv4 address or IPv6 /64).
EXCHANGES_PER_CALLER, EXCHANGE_WINDOW = 5, 60.0
# An authorization code is exchanged at most once; Kommo's codes live 20 minutes, and a code
# replayed after our memory of it fades is refused by Kommo itself (and still throttled here).
CODE_MEMORY_SECONDS = 600.0
# A disconnect whose check found our tokens still good is not checked again this long.
DISCONNECT_MEMORY_SECONDS = 600.0
# Wrong /admin passwords: per caller, and in all (which bounds guesses from many addresses).
ADMIN_FAILURES_PER_CALLER, ADMIN_FAILURES_IN_ALL, ADMIN_WINDOW = 5, 50, 60.0
MAX_KEYS = 10_000


class Throttled(MailsyncError):
    """429: the caller must wait `retry_after` seconds."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, math.ceil(retry_after))


class TokenBucket:
    """`rate` events per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> float:
        """0 when an event may happen now (and counts it), else seconds until one may."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class SlidingWindow:
    """At most `limit` events per key within any `window` seconds. Holds at most `max_keys`
    keys; beyond that the least recently active is forgotten (the in-all limits still hold)."""

    def __init__(self, limit: int, window: float, *, max_keys: int = MAX_KEYS,
                 clock: Clock = time.monotonic) -> None:
        self.limit, self.window, self.max_keys, self._clock = limit, window, max_keys, clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """0 when `key` may act now, else seconds until it may."""
        events = self._current(key)
        if events is None or len(events) < self.limit:
            return 0.0
        return events[0] + self.window - self._clock()

    def add(self, key: str) -> None:
        events = self._current(key)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        events.append(self._clock())

    def hit(self, key: str) -> float:
        """`wait`, and count the event when it may happen."""
        waited = self.wait(key)
        if waited <= 0:
            self.add(key)
        return waited

    def _current(self, key: str) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        horizon = self._clock() - self.window
        while events and events[0] <= horizon:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events


class Remembered:
    """Values remembered for `ttl` seconds, as SHA-256 digests (a leaked memory shows no code)."""

    def __init__(self, ttl: float, *, max_items: int = 100_000, clock: Clock = time.monotonic) -> None:
        self.ttl, self.max_items, self._clock = ttl, max_items, clock
        self._until: OrderedDict[bytes, float] = OrderedDict()

    def __contains__(self, value: str) -> bool:
        self._forget_expired()
        return _digest(value) in self._until

    def add(self, value: str) -> None:
        self._forget_expired()
        digest = _digest(value)
        self._until.pop(digest, None)
        self._until[digest] = self._clock() + self.ttl  # every entry has the same ttl: in order
        while len(self._until) > self.max_items:
            self._until.popitem(last=False)

    def discard(self, value: str) -> None:
        self._until.pop(_digest(value), None)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def caller_key(address: str | None) -> str:
    """Who is calling, for per-caller limits: the IPv4 address, or the IPv6 /64 (one host
    usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Guards:
    """The process's limits; `create_app` makes one per app."""

    clock: Clock = time.monotonic
    token_requests: TokenBucket = field(init=False)
    exchanges: SlidingWindow = field(init=False)
    codes: Remembered = field(init=False)
    still_authorized: Remembered = field(init=False)
    admin_failures: SlidingWindow = field(init=False)
    admin_failures_in_all: SlidingWindow = field(init=False)

    def __post_init__(self) -> None:
        clock = self.clock
        self.token_requests = TokenBucket(TOKEN_REQUESTS_PER_SECOND, TOKEN_REQUESTS_BURST, clock=clock)
        self.exchanges = SlidingWindow(EXCHANGES_PER_CALLER, EXCHANGE_WINDOW, clock=clock)
        self.codes = Remembered(CODE_MEMORY_SECONDS, clock=clock)
        self.still_authorized = Remembered(DISCONNECT_MEMORY_SECONDS, clock=clock)
        self.admin_failures = SlidingWindow(ADMIN_FAILURES_PER_CALLER, ADMIN_WINDOW, clock=clock)
        self.admin_failures_in_all = SlidingWindow(ADMIN_FAILURES_IN_ALL, ADMIN_WINDOW, clock=clock)

    def token_request(self) -> None:
        """Count one token request caused by an anonymous caller, or raise 429."""
        waited = self.token_requests.take()
        if waited > 0:
            raise Throttled("too many authorizations at once; try again shortly",
                            retry_after=waited)


def guards(request: Any) -> Guards:
    """The app's limits (`create_app` makes them; an app built otherwise gets its own)."""
    state = request.app.state
    if not hasattr(state, "guards"):
        state.guards = Guards()
    return state.guards


def caller(request: Any) -> str:
    """The caller's key for per-caller limits. Behind a proxy, uvicorn must trust its forwarded
    headers (FORWARDED_ALLOW_IPS), or every caller is the proxy."""
    return caller_key(request.client.host if request.client else None)

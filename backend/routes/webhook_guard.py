"""What stands between the webhook routes and a hostile caller (docs/ARCHITECTURE.md §3, "Hostile
input"): a capped body read, large bodies parsed off the event loop, and a per-caller count of
failed authentications (in this process, like the other limits in `throttle.py`).

Parsing a 1 MiB body is tens of milliseconds of Python: done on the loop, every other request of
the process (`/healthz` included) would wait for it. Bodies over `INLINE_PARSE_BYTES` are parsed
in a worker thread instead, one at a time: a flood of large bodies queues for that thread rather
than for the loop's turn at the GIL (measured with bench/hostile.py: with two parse threads
`/healthz` waited about twice as long under attack as with one).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response

from backend.errors import MailsyncError, PayloadTooLarge
from backend.throttle import SlidingWindow, Throttled, caller

MAX_BODY = 1024 * 1024
INLINE_PARSE_BYTES = 64 * 1024  # ~2 ms of parsing: below this a thread hop costs more than it saves
PARSE_THREADS = 1
# Only these count: a caller that knows a live key and signs correctly is never limited.
AUTH_FAILURES = frozenset({"unknown_hook", "missing_signature", "bad_signature"})
FAILURE_LIMIT = 30  # failures per caller (IPv4 address or IPv6 /64) within the window; then 429
FAILURE_WINDOW = 60.0  # seconds
MAX_CALLERS = 10_000  # callers remembered (≤ 30 timestamps each); the least recent go first
_HOOK_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")  # `security.new_hook_key`; the column holds 64

T = TypeVar("T")


def plausible_key(hook_key: str) -> bool:
    """A key that could be stored: anything else is unknown without a database read (and
    without a cache entry the size of the caller's URL)."""
    return _HOOK_KEY.fullmatch(hook_key) is not None


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused with 413 as soon as it is known to pass `limit` (whatever limit the
    app's middleware sets for other routes)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise PayloadTooLarge(f"a webhook body is at most {limit // 1024} KiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a webhook body is at most {limit // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def off_loop(request: Request, size: int, func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` — in a worker thread when the body it parses is large."""
    if size <= INLINE_PARSE_BYTES:
        return func(*args)
    state = request.app.state
    if not hasattr(state, "parse_threads"):
        state.parse_threads = anyio.CapacityLimiter(PARSE_THREADS)
    return await anyio.to_thread.run_sync(functools.partial(func, *args),
                                          limiter=state.parse_threads)


def _failures(request: Request) -> SlidingWindow:
    state = request.app.state
    if not hasattr(state, "hook_failures"):
        state.hook_failures = SlidingWindow(FAILURE_LIMIT, FAILURE_WINDOW, max_keys=MAX_CALLERS)
    return state.hook_failures


def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A route whose failed authentications count against the caller's address: past the limit
    they are answered 429 `too_many_failures` with `Retry-After` instead of 404/400/401. Only
    failures count, so the same address delivering valid hooks is never held back."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except MailsyncError as exc:
            if exc.code not in AUTH_FAILURES:
                raise
            waited = _failures(request).hit(caller(request))  # counted while under the limit
            if waited <= 0:
                raise
            raise Throttled("too many failed webhook authentications from this address",
                            retry_after=waited, code="too_many_failures") from None

    return route

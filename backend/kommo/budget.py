"""The per-account Kommo request budget, shared by every process through the database."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.resources import Resources

# Kommo allows 7 requests/s and blocks the IP of repeat offenders. With a bucket of 1 refilled at
# 5/s, any 8 consecutive grants span at least 1.4 s; the spare 0.4 s absorbs the varying delay
# between a grant and the request's arrival at Kommo (measured up to ~0.3 s on a loaded machine:
# lock waits, event-loop lag), so 8 requests never *arrive* within one second.
RATE = 5.0
BURST = 1.0
# A 429 without `retry_after` pauses the account 1 s, doubling (to 60 s) while they keep coming.
PAUSE_FIRST, PAUSE_CAP = 1.0, 60.0
_LAST_PAUSE: dict[str, tuple[float, float]] = {}  # key → (seconds, monotonic end), this process


def budget_key(account_id: int | None, host: str | None = None) -> str:
    return f"kommo:{account_id}" if account_id is not None else f"kommo:host:{host}"


async def wait_for_budget(resources: Resources, key: str) -> float:
    return await resources.limiter.acquire(key, rate=RATE, burst=BURST, service="kommo")


async def pause_after_429(resources: Resources, key: str, retry_after: float | None) -> float:
    """Kommo refused a call with 429 (it blocks integrations that keep calling): no call for this
    budget, in any process, for the seconds Kommo gave or our default. Returns the seconds."""
    seconds = retry_after if retry_after is not None else _default_pause(key)
    await resources.limiter.pause(key, seconds)
    return seconds


def _default_pause(key: str) -> float:
    now = time.monotonic()
    last, ended = _LAST_PAUSE.get(key, (0.0, float("-inf")))
    seconds = min(PAUSE_CAP, last * 2) if now - ended < max(PAUSE_CAP, last * 2) else PAUSE_FIRST
    _LAST_PAUSE[key] = (seconds, now + seconds)
    return seconds

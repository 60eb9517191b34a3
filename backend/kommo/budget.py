"""The per-account Kommo request budget, shared by every process through the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.resources import Resources

# Kommo allows 7 requests/s and blocks the IP of repeat offenders. With a bucket of 1 refilled at
# 5/s, any 8 consecutive grants span at least 1.4 s; the spare 0.4 s absorbs the varying delay
# between a grant and the request's arrival at Kommo (measured up to ~0.3 s on a loaded machine:
# lock waits, event-loop lag), so 8 requests never *arrive* within one second.
RATE = 5.0
BURST = 1.0


def budget_key(account_id: int | None, host: str | None = None) -> str:
    return f"kommo:{account_id}" if account_id is not None else f"kommo:host:{host}"


async def wait_for_budget(resources: Resources, key: str) -> float:
    return await resources.limiter.acquire(key, rate=RATE, burst=BURST, service="kommo")

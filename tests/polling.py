"""Wait for a condition with a deadline instead of sleeping a fixed time."""

import asyncio
import time


async def eventually(check, *, within=15.0, interval=0.02, message="condition not met"):
    """Await `check()` (sync or async) until it returns a truthy value; return that value."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {within} s")
        await asyncio.sleep(interval)

"""Per-key token buckets shared by every process of the deployment through the database.

One bucket per key (e.g. `kommo:29085424`, `mailerlite:<key hash>`). Taking a token is a single
conditional UPDATE, atomic on SQLite and PostgreSQL alike, so any number of workers share one
budget without a lock table. Callers wait for budget rather than fail.

A vendor's 429 pauses a key (`pause`): the bucket holds no token until the time the vendor gave,
for every process. Callers wait out a short pause; a longer one (over `PAUSE_WAIT`) fails the
call at once with `UpstreamRateLimited` (code `vendor_paused`), so a job goes back to the queue
instead of holding a worker, and nothing reaches the vendor before the pause ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import case, literal, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import metrics
from backend.db import insert_for
from backend.errors import UpstreamRateLimited
from backend.models import ConcurrencySlot, RateBucket

MIN_WAIT = 0.005
PAUSE_WAIT = 5.0  # seconds a caller waits out a vendor's pause before giving up the call
PAUSED = "vendor_paused"


def _paused(key: str, service: str, wait: float) -> UpstreamRateLimited:
    vendor = service or key.split(":", 1)[0]
    return UpstreamRateLimited(f"{vendor} asked us to slow down; calls wait {wait:.1f} s more",
                               code=PAUSED, service=vendor, retry_after=round(wait, 3))


class RateLimiter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pause_wait: float = PAUSE_WAIT,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._sleep = sleep
        self._pause_wait = pause_wait
        self._slots = _DatabaseSlots(sessions, clock, sleep)

    def slot(self, key: str, limit: int) -> contextlib.AbstractAsyncContextManager[None]:
        """One of `limit` simultaneous calls for `key`, across all processes."""
        return self._slots.slot(key, limit)

    async def acquire(self, key: str, *, rate: float, burst: float, service: str = "") -> float:
        """Take one token from `key` (refilling at `rate`/s up to `burst`); returns seconds waited."""
        waited = 0.0
        while True:
            wait = await self._try_take(key, rate, burst)
            if wait <= 0:
                return waited
            if wait > self._pause_wait:
                raise _paused(key, service, wait)
            metrics.RATE_LIMIT_WAITS.labels(service or key.split(":", 1)[0]).inc()
            await self._sleep(wait)
            waited += wait

    async def _try_take(self, key: str, rate: float, burst: float) -> float:
        async with self._sessions() as session, session.begin():
            # Read the clock once the transaction holds its place (SQLite: the write lock): a
            # time read while queueing would be stale by the time it is written.
            await session.connection()
            now = self._clock()
            await session.exec(insert_for(session)(RateBucket)
                               .values(key=key, tokens=burst, updated_at=now)
                               .on_conflict_do_nothing())
            elapsed = case((literal(now) > RateBucket.updated_at, literal(now) - RateBucket.updated_at),
                           else_=0.0)
            refilled = RateBucket.tokens + elapsed * rate
            available = case((refilled > burst, literal(burst)), else_=refilled)
            taken = await session.exec(
                update(RateBucket)
                .where(RateBucket.key == key, available >= 1 - 1e-9)  # float refill
                # The bucket's clock never runs backwards, whichever process writes last.
                .values(tokens=available - 1,
                        updated_at=case((literal(now) > RateBucket.updated_at, literal(now)),
                                        else_=RateBucket.updated_at))
                .execution_options(synchronize_session=False))
            if taken.rowcount == 1:
                return 0.0
            tokens, updated_at = (await session.exec(
                select(RateBucket.tokens, RateBucket.updated_at).where(RateBucket.key == key))).one()
        current = min(burst, tokens + max(0.0, now - updated_at) * rate)
        return max(MIN_WAIT, max(0.0, updated_at - now) + (1 - current) / rate)

    async def pause(self, key: str, seconds: float) -> None:
        """No token for `key` during the next `seconds`, in any process (a later end already
        stored is kept)."""
        async with self._sessions() as session, session.begin():
            await session.connection()
            until = self._clock() + seconds
            table = RateBucket.__table__
            statement = insert_for(session)(table).values(key=key, tokens=0.0, updated_at=until)
            await session.exec(statement.on_conflict_do_update(index_elements=["key"], set_={
                "tokens": 0.0,
                "updated_at": case((table.c.updated_at > until, table.c.updated_at), else_=until)}))


SLOT_LEASE = 120.0  # seconds: a call's permit outlives any call we would wait for
SLOT_POLL = 0.02  # seconds between tries while every permit is taken


class _DatabaseSlots:
    """N permits per key in `concurrency_slot`, shared by every process of the deployment."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]]) -> None:
        self._sessions, self._clock, self._sleep = sessions, clock, sleep
        self._seeded: set[tuple[str, int]] = set()

    @contextlib.asynccontextmanager
    async def slot(self, key: str, limit: int) -> AsyncIterator[None]:
        holder = secrets.token_hex(8)
        taken = await self._take(key, limit, holder)
        try:
            yield
        finally:
            async with self._sessions() as session, session.begin():
                await session.exec(
                    update(ConcurrencySlot)
                    .where(ConcurrencySlot.key == key, ConcurrencySlot.slot == taken,
                           ConcurrencySlot.holder == holder)
                    .values(holder=None, lease_until=None)
                    .execution_options(synchronize_session=False))

    async def _take(self, key: str, limit: int, holder: str) -> int:
        await self._seed(key, limit)
        while True:
            async with self._sessions() as session, session.begin():
                now = self._clock()
                free = (select(ConcurrencySlot.slot)
                        .where(ConcurrencySlot.key == key, ConcurrencySlot.slot < limit,
                               (ConcurrencySlot.lease_until.is_(None))
                               | (ConcurrencySlot.lease_until < now))
                        .limit(1).with_for_update(skip_locked=True))
                slot = (await session.exec(free)).first()
                if slot is not None:
                    await session.exec(
                        update(ConcurrencySlot)
                        .where(ConcurrencySlot.key == key, ConcurrencySlot.slot == slot[0])
                        .values(holder=holder, lease_until=now + SLOT_LEASE)
                        .execution_options(synchronize_session=False))
                    return slot[0]
            await self._sleep(SLOT_POLL)

    async def _seed(self, key: str, limit: int) -> None:
        if (key, limit) in self._seeded:
            return
        async with self._sessions() as session, session.begin():
            await session.exec(insert_for(session)(ConcurrencySlot)
                               .values([{"key": key, "slot": n} for n in range(limit)])
                               .on_conflict_do_nothing())
        self._seeded.add((key, limit))


class LocalRateLimiter:
    """The same buckets kept in memory, for SQLite: the embedded engine runs a single process,
    so a database round trip (and a write lock) per outbound call would buy nothing."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pause_wait: float = PAUSE_WAIT,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._pause_wait = pause_wait
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, updated_at)
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    def slot(self, key: str, limit: int) -> contextlib.AbstractAsyncContextManager[None]:
        """One of `limit` simultaneous calls for `key` (one process: a semaphore does it)."""
        if key not in self._semaphores:
            self._semaphores[key] = asyncio.Semaphore(limit)
        return self._semaphores[key]

    async def acquire(self, key: str, *, rate: float, burst: float, service: str = "") -> float:
        waited = 0.0
        while True:
            wait = self._try_take(key, rate, burst)
            if wait <= 0:
                return waited
            if wait > self._pause_wait:
                raise _paused(key, service, wait)
            metrics.RATE_LIMIT_WAITS.labels(service or key.split(":", 1)[0]).inc()
            await self._sleep(wait)
            waited += wait

    def _try_take(self, key: str, rate: float, burst: float) -> float:
        now = self._clock()
        tokens, updated_at = self._buckets.get(key, (burst, now))
        if updated_at > now:  # paused
            return max(MIN_WAIT, updated_at - now + (1 - tokens) / rate)
        tokens = min(burst, tokens + (now - updated_at) * rate)
        if tokens >= 1 - 1e-9:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return max(MIN_WAIT, (1 - tokens) / rate)

    async def pause(self, key: str, seconds: float) -> None:
        until = self._clock() + seconds
        _, updated_at = self._buckets.get(key, (0.0, until))
        self._buckets[key] = (0.0, max(until, updated_at))

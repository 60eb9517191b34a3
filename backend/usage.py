"""The `vendor_usage` table: calls answered by Kommo and the platforms, and their 429s, per
account, vendor and UTC hour, summed over every process of the deployment.

`http.send` counts each answer in memory (`record`: no database write on the hot path); a
`Flusher`, started with the process's resources, adds the counts to the table every few seconds
and once more when the resources close. Counts are kept per HTTP client, as the other per-client
caches are, so each set of resources flushes exactly the calls made through its own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx2
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import activity_hourly, db, logs, metrics
from backend.models import Account, VendorUsage

log = logging.getLogger("mailsync.usage")

FLUSH_SECONDS = 5.0
RETENTION = timedelta(days=7)
RATE_LIMITED = 429

# (account id, vendor, hours since the epoch) → [calls, 429s], per HTTP client.
Key = tuple[int, str, int]
_COUNTS: weakref.WeakKeyDictionary[httpx2.AsyncClient, dict[Key, list[int]]] = (
    weakref.WeakKeyDictionary())


def record(client: httpx2.AsyncClient, vendor: str, status: int) -> None:
    """One answered call, for the account being served (`logs.bind_account`). Calls made for
    no account (an install's token exchange) reach /metrics only."""
    if status == RATE_LIMITED:
        metrics.OUTBOUND_RATE_LIMITED.labels(vendor).inc()
    account_id = logs.account_id_var.get()
    if account_id is None:
        return
    counts = _COUNTS.get(client)
    if counts is None:
        counts = _COUNTS[client] = {}
    tally = counts.setdefault((account_id, vendor, int(time.time() // 3600)), [0, 0])
    tally[0] += 1
    tally[1] += status == RATE_LIMITED


def _take(client: httpx2.AsyncClient) -> dict[Key, list[int]]:
    counts = _COUNTS.get(client)
    if not counts:
        return {}
    _COUNTS[client] = {}
    return counts


def _give_back(client: httpx2.AsyncClient, counts: dict[Key, list[int]]) -> None:
    current = _COUNTS.setdefault(client, {})
    for key, (calls, limited) in counts.items():
        tally = current.setdefault(key, [0, 0])
        tally[0] += calls
        tally[1] += limited


async def flush(sessions: async_sessionmaker[AsyncSession], client: httpx2.AsyncClient) -> None:
    """Add the client's counts so far to the table. On a database error they are kept for the
    next flush rather than lost."""
    counts = _take(client)
    if not counts:
        return
    try:
        async with sessions() as session, session.begin():
            await _add(session, counts)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("vendor usage not stored yet: %s", type(exc).__name__)
        _give_back(client, counts)


async def _add(session: AsyncSession, counts: dict[Key, list[int]]) -> None:
    known = set((await session.exec(select(Account.id).where(
        col(Account.id).in_({key[0] for key in counts})))).all())
    table = VendorUsage.__table__
    insert = db.insert_for(session)
    # Sorted, so two processes adding the same rows lock them in the same order (no deadlock).
    for (account_id, vendor, hour), (calls, limited) in sorted(counts.items()):
        if account_id not in known:  # deleted since the call (the sandbox's fresh start)
            continue
        statement = insert(table).values(
            account_id=account_id, vendor=vendor, calls=calls, rate_limited=limited,
            hour=datetime.fromtimestamp(hour * 3600, UTC))
        await session.exec(statement.on_conflict_do_update(
            index_elements=["account_id", "vendor", "hour"],
            set_={"calls": table.c.calls + statement.excluded.calls,
                  "rate_limited": table.c.rate_limited + statement.excluded.rate_limited}))


async def prune(sessions: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """Hours older than the retention, of this table and of `activity_hourly`."""
    before = now - RETENTION
    try:
        async with sessions() as session, session.begin():
            await session.exec(delete(VendorUsage).where(col(VendorUsage.hour) < before))
            await activity_hourly.prune(session, before)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("hourly counts not pruned: %s", type(exc).__name__)


class Flusher:
    """Flushes one client's counts every `interval` seconds, prunes once an hour, and flushes a
    last time when stopped."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: httpx2.AsyncClient,
                 interval: float = FLUSH_SECONDS) -> None:
        self.sessions, self.client, self.interval = sessions, client, interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="vendor-usage-flusher")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self._flush_and_prune(prune_at=None)

    async def _loop(self) -> None:
        pruned_hour = None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return  # `stop` flushes the last counts
            now = datetime.now(UTC)
            await self._flush_and_prune(prune_at=None if now.hour == pruned_hour else now)
            pruned_hour = now.hour

    async def _flush_and_prune(self, prune_at: datetime | None) -> None:
        try:
            await flush(self.sessions, self.client)
            if prune_at is not None:
                await prune(self.sessions, prune_at)
        except Exception:  # the counts are worth less than the process: keep it going
            log.exception("vendor usage flush failed")


# --- reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    calls: int = 0
    rate_limited: int = 0


async def by_account(
    session: AsyncSession, account_ids: Sequence[int], hour: datetime
) -> dict[int, dict[str, Usage]]:
    """Per account and vendor, the calls and 429s stored for the UTC hour starting at `hour`."""
    query = select(VendorUsage).where(col(VendorUsage.account_id).in_(list(account_ids)),
                                      col(VendorUsage.hour) == hour)
    found: dict[int, dict[str, Usage]] = {account_id: {} for account_id in account_ids}
    for row in (await session.exec(query)).all():
        found[row.account_id][row.vendor] = Usage(row.calls, row.rate_limited)
    return found

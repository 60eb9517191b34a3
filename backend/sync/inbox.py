"""Durable intake of webhook deliveries: inbox row + job(s), in one transaction.

Handlers call `Inbox.submit` and answer only after it returns, so an acknowledged delivery is on
disk. One writer task commits many deliveries per transaction (SQLite allows a single writer;
a transaction per request caps ingest at a few hundred per second, see DEPENDENCIES.md), while
each caller awaits the outcome of its own delivery. A delivery whose dedupe key was seen before
inserts nothing and enqueues nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import insert_for
from backend.models import InboxEvent, utcnow
from backend.sync import jobs
from backend.sync.jobs import JobSpec

log = logging.getLogger("mailsync.inbox")
MAX_BATCH = 500


@dataclass(frozen=True)
class Delivery:
    source: str  # "kommo" | "mailerlite" | "mailchimp"
    account_id: int
    dedupe_key: str
    body: str
    jobs: tuple[JobSpec, ...]


class Inbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        on_commit: Callable[[], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessions = sessions
        self.on_commit = on_commit
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Delivery, asyncio.Future[bool]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, delivery: Delivery) -> bool:
        """Store the delivery durably; True when it was new, False for a repeat."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="inbox-writer")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((delivery, future))
        return await future

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[tuple[Delivery, asyncio.Future[bool]]]) -> None:
        try:
            outcomes = await self._commit([delivery for delivery, _ in batch])
        except Exception:
            if len(batch) == 1:
                log.exception("could not store a %s delivery", batch[0][0].source)
                _settle(batch[0][1], exc=RuntimeError("the delivery could not be stored"))
                return
            # One bad delivery must not fail the others: store them one by one.
            for item in batch:
                await self._write([item])
            return
        for (_, future), new in zip(batch, outcomes, strict=True):
            _settle(future, value=new)
        if self.on_commit is not None and any(outcomes):
            self.on_commit()

    async def _commit(self, deliveries: list[Delivery]) -> list[bool]:
        async with self._sessions() as session, session.begin():
            new_keys = await store(session, deliveries)
        seen: set[str] = set()
        outcomes = []
        for delivery in deliveries:
            outcomes.append(delivery.dedupe_key in new_keys and delivery.dedupe_key not in seen)
            seen.add(delivery.dedupe_key)
        return outcomes


def _settle(future: asyncio.Future[bool], *, value: bool = False, exc: Exception | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


async def store(session: AsyncSession, deliveries: list[Delivery]) -> set[str]:
    """Insert the deliveries not seen before and enqueue their jobs; returns their dedupe keys."""
    unique = list({d.dedupe_key: d for d in reversed(deliveries)}.values())[::-1]
    now = utcnow()
    insert = insert_for(session)
    # ON CONFLICT DO NOTHING: a repeat (even one racing in from another web process) inserts
    # nothing, and RETURNING tells which deliveries were new.
    statement = (insert(InboxEvent)
                 .values([{"source": d.source, "account_id": d.account_id,
                           "dedupe_key": d.dedupe_key, "body": d.body, "received_at": now}
                          for d in unique])
                 .on_conflict_do_nothing(index_elements=["dedupe_key"])
                 .returning(InboxEvent.dedupe_key))
    new_keys = set((await session.exec(statement)).scalars())
    # PostgreSQL refuses to update one row twice in a statement: last spec per key wins.
    specs = {spec.coalesce_key: spec for d in unique if d.dedupe_key in new_keys for spec in d.jobs}
    await jobs.enqueue(session, list(specs.values()))
    return new_keys

"""Durable intake of webhook deliveries: inbox row + job(s), in one transaction.

Handlers call `Inbox.submit` and answer only after it returns, so an acknowledged delivery is on
disk. A writer thread with its own blocking connection commits many deliveries per transaction
(group commit) while each caller awaits the outcome of its own delivery. Keeping the writes off
the event loop matters: SQLite allows one writer, and a transaction per request — or a batch
whose every database round trip waits its turn behind request handlers on the loop — caps
ingest far below what the web layer serves (measured on this kind of machine). A delivery whose dedupe key was
seen before inserts nothing and enqueues nothing.

A row keeps what the route made of the delivery (`compact_body`: the events it acts on), never
the raw body: a body padded to the size limit around one real event would otherwise be kept for
30 days. Every stored body is capped at `MAX_BODY_CHARS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from backend import jobs
from backend.db import insert_for
from backend.jobs import JobSpec
from backend.models import InboxEvent, utcnow

log = logging.getLogger("mailsync.inbox")
MAX_BATCH = 500
CHECKPOINT_EVERY = 200  # commits between write-ahead-log checkpoints (SQLite)
LINGER = 0.0002  # seconds the writer waits for more deliveries once the first has arrived
MAX_BODY_CHARS = 64 * 1024


@dataclass(frozen=True)
class Delivery:
    source: str  # "kommo" | "mailerlite" | "mailchimp"
    account_id: int
    dedupe_key: str
    body: str
    jobs: tuple[JobSpec, ...]


def compact_body(events: list, limit: int = MAX_BODY_CHARS) -> str:
    """`{"events": [...]}` in compact JSON; past `limit` characters the first events that fit,
    and `"omitted"`: how many were left out."""
    whole = json.dumps({"events": events}, separators=(",", ":"))
    if len(whole) <= limit:
        return whole
    kept: list[str] = []
    size = 40  # the wrapper and the count
    for event in events:
        text = json.dumps(event, separators=(",", ":"))
        size += len(text) + 1
        if size > limit:
            break
        kept.append(text)
    return f'{{"events":[{",".join(kept)}],"omitted":{len(events) - len(kept)}}}'


_Item = tuple[Delivery, asyncio.Future, asyncio.AbstractEventLoop]
_STOP = object()


class Inbox:
    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        *,
        checkpoint: Callable[[], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._engine_factory = engine_factory
        self._checkpoint = checkpoint
        self._checkpoint_due = threading.Event()
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.on_commit: Callable[[], None] | None = None

    async def submit(self, delivery: Delivery) -> bool:
        """Store the delivery durably; True when it was new, False for a repeat."""
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put((delivery, future, loop))
        return await future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._write_forever, name="inbox-writer",
                                                daemon=True)
                self._thread.start()
                if self._checkpoint is not None:
                    threading.Thread(target=self._checkpoint_forever, name="inbox-checkpoint",
                                     daemon=True).start()

    async def close(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.to_thread(thread.join)

    def _write_forever(self) -> None:
        engine = self._engine_factory()
        try:
            commits = 0
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._write(engine, batch)
                commits += 1
                if commits % CHECKPOINT_EVERY == 0:
                    self._checkpoint_due.set()
        finally:
            self._checkpoint_due.set()
            engine.dispose()

    def _checkpoint_forever(self) -> None:
        """SQLite: copy the write-ahead log back into the database off the writer's path, so
        no acknowledged delivery waits for that copy and its fsync."""
        checkpoint = self._checkpoint
        while checkpoint is not None and self._thread is not None and self._thread.is_alive():
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            try:
                checkpoint()
            except Exception:
                log.exception("WAL checkpoint failed")

    def _next_batch(self) -> list[_Item] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        with contextlib.suppress(queue.Empty):
            # Deliveries parsed in the same instant join this commit instead of the next one.
            while len(batch) < self._max_batch:
                item = self._queue.get(timeout=LINGER)
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
        return batch

    def _write(self, engine: Engine, batch: list[_Item]) -> None:
        try:
            with engine.begin() as connection:
                new_keys = store_sync(connection, [delivery for delivery, _, _ in batch])
        except Exception:
            if len(batch) == 1:
                log.exception("could not store a %s delivery", batch[0][0].source)
                _settle(batch, error=RuntimeError("the delivery could not be stored"))
                return
            # One bad delivery must not fail the others: store them one by one.
            for item in batch:
                self._write(engine, [item])
            return
        _settle(batch, new_keys=new_keys)
        if new_keys and self.on_commit is not None:
            batch[0][2].call_soon_threadsafe(self.on_commit)


def _settle(batch: list[_Item], *, new_keys: set[str] | None = None,
            error: Exception | None = None) -> None:
    """Hand each caller its outcome on its own loop — one wake-up per loop per batch, not one
    per delivery. A key new in this batch counts as new once."""
    seen: set[str] = set()
    outcomes: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, bool]]] = {}
    for delivery, future, loop in batch:
        key = delivery.dedupe_key
        outcomes.setdefault(loop, []).append(
            (future, new_keys is not None and key in new_keys and key not in seen))
        seen.add(key)
    for loop, results in outcomes.items():
        loop.call_soon_threadsafe(_resolve_all, results, error)


def _resolve_all(results: list[tuple[asyncio.Future, bool]], error: Exception | None) -> None:
    for future, value in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def store_sync(connection: Connection, deliveries: list[Delivery]) -> set[str]:
    """Insert the deliveries not seen before and enqueue their jobs; returns their dedupe keys."""
    unique = list({d.dedupe_key: d for d in reversed(deliveries)}.values())[::-1]
    now = utcnow()
    # ON CONFLICT DO NOTHING: a repeat (even one racing in from another web process) inserts
    # nothing, and RETURNING tells which deliveries were new.
    statement = (insert_for(connection)(InboxEvent.__table__)
                 .on_conflict_do_nothing(index_elements=["dedupe_key"])
                 .returning(InboxEvent.__table__.c.dedupe_key))
    rows = [{"source": d.source, "account_id": d.account_id, "dedupe_key": d.dedupe_key,
             "body": d.body[:MAX_BODY_CHARS], "received_at": now, "handled_at": None}
            for d in unique]
    new_keys = set(connection.execute(statement, rows).scalars())
    # PostgreSQL refuses to update one row twice in a statement: last spec per key wins.
    specs = {spec.coalesce_key: spec for d in unique if d.dedupe_key in new_keys for spec in d.jobs}
    jobs.enqueue_sync(connection, list(specs.values()))
    return new_keys

"""Our answers to Kommo's webhook deliveries, per account: how close each account is to Kommo's
rule that a webhook answered badly more than 100 times within 2 hours is disabled (after which
Kommo sends nothing until the webhook is subscribed again; `sync/catchup.py` does that).

A bad answer is anything but 2xx, or a 2xx later than the 2 s Kommo waits. `counted` wraps the
Kommo webhook route and `record`s each answer in memory (no database write on the hot path); the
counts reach the `hook_answer` table (account, 10-minute bucket) at most every FLUSH_SECONDS,
flushed in the background by the next answer after that. Reads add this process's counts not yet
flushed. Buckets make "the last 2 hours" up to 10 minutes longer: the count errs high, never low.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from backend import db, logs
from backend.errors import MailsyncError
from backend.models import Account, HookAnswer

log = logging.getLogger("mailsync.hook_answers")

BUCKET_SECONDS = 600
WINDOW = timedelta(hours=2)
DISABLE_AFTER = 100  # Kommo disables the webhook past this many bad answers in WINDOW
KOMMO_WAITS = 2.0  # seconds; a later answer is as bad as none
FLUSH_SECONDS = 5.0
RETENTION = timedelta(days=1)

# Per database (engine): (account id, bucket number) → [good, bad] not yet in the table.
Key = tuple[int, int]
_PENDING: weakref.WeakKeyDictionary[AsyncEngine, dict[Key, list[int]]] = weakref.WeakKeyDictionary()
_LAST_FLUSH: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()
# Held while counts move from memory to the table, so a read sees them in one place or the other.
_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()
_FLUSHING: set[asyncio.Task[None]] = set()


def is_bad(status: int, seconds: float = 0.0) -> bool:
    return not 200 <= status < 300 or seconds > KOMMO_WAITS


def record(engine: AsyncEngine, account_id: int, status: int, *, seconds: float = 0.0,
           at: float | None = None) -> None:
    """One answer we gave Kommo for `account_id`, `seconds` after the request arrived."""
    bucket = int((time.time() if at is None else at) // BUCKET_SECONDS)
    tally = _PENDING.setdefault(engine, {}).setdefault((account_id, bucket), [0, 0])
    tally[is_bad(status, seconds)] += 1


def _lock(engine: AsyncEngine) -> asyncio.Lock:
    return _LOCKS.setdefault(engine, asyncio.Lock())


async def flush(engine: AsyncEngine) -> None:
    """Add this process's counts to the table (kept for the next flush on a database error),
    and drop buckets past retention."""
    _LAST_FLUSH[engine] = time.monotonic()
    async with _lock(engine):
        await _flush(engine)


async def _flush(engine: AsyncEngine) -> None:
    counts, _PENDING[engine] = _PENDING.get(engine, {}), {}
    if not counts:
        return
    try:
        async with db.session_factory(engine)() as session, session.begin():
            await _add(session, counts)
            await session.exec(delete(HookAnswer).where(
                col(HookAnswer.bucket) < datetime.now(UTC) - RETENTION))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("webhook answer counts not stored yet: %s", type(exc).__name__)
        for key, (good, bad) in counts.items():
            tally = _PENDING.setdefault(engine, {}).setdefault(key, [0, 0])
            tally[0], tally[1] = tally[0] + good, tally[1] + bad


async def _add(session: AsyncSession, counts: dict[Key, list[int]]) -> None:
    known = set((await session.exec(select(Account.id).where(
        col(Account.id).in_({account_id for account_id, _ in counts})))).all())
    table = HookAnswer.__table__
    insert = db.insert_for(session)
    # Sorted, so two processes adding the same rows lock them in the same order.
    for (account_id, bucket), (good, bad) in sorted(counts.items()):
        if account_id not in known:
            continue
        statement = insert(table).values(account_id=account_id, ok=good, bad=bad,
                                         bucket=datetime.fromtimestamp(bucket * BUCKET_SECONDS, UTC))
        await session.exec(statement.on_conflict_do_update(
            index_elements=["account_id", "bucket"],
            set_={"ok": table.c.ok + statement.excluded.ok, "bad": table.c.bad + statement.excluded.bad}))


async def bad_answers_last_2h(session: AsyncSession, account_id: int,
                              now: datetime | None = None) -> int:
    """Bad answers to Kommo for this account in the last 2 hours (stored and this process's)."""
    return (await answers_last_2h(session, [account_id], now)).get(account_id, (0, 0))[1]


async def answers_last_2h(session: AsyncSession, account_ids: list[int],
                          now: datetime | None = None) -> dict[int, tuple[int, int]]:
    """Account id → (good, bad) answers in the last 2 hours, for the operator's overview."""
    now = now or datetime.now(UTC)
    first = int((now - WINDOW).timestamp() // BUCKET_SECONDS)
    async with _lock(session.bind):
        return _totals(await _stored(session, account_ids, first),
                       _PENDING.get(session.bind, {}), account_ids, first)


async def _stored(session: AsyncSession, account_ids: list[int], first: int) -> list[tuple[int, int, int]]:
    return list((await session.exec(
        select(HookAnswer.account_id, func.sum(HookAnswer.ok), func.sum(HookAnswer.bad))
        .where(col(HookAnswer.account_id).in_(account_ids),
               col(HookAnswer.bucket) >= datetime.fromtimestamp(first * BUCKET_SECONDS, UTC))
        .group_by(col(HookAnswer.account_id)))).all())


def _totals(rows: list[tuple[int, int, int]], pending: dict[Key, list[int]], account_ids: list[int],
            first: int) -> dict[int, tuple[int, int]]:
    found = {account_id: [int(good or 0), int(bad or 0)] for account_id, good, bad in rows}
    for (account_id, bucket), (good, bad) in list(pending.items()):
        if account_id in account_ids and bucket >= first:
            tally = found.setdefault(account_id, [0, 0])
            tally[0], tally[1] = tally[0] + good, tally[1] + bad
    return {account_id: (good, bad) for account_id, (good, bad) in found.items()}


def counted(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap the Kommo webhook route: each answer (errors included) is recorded for the account the
    route bound (`logs.bind_account`); answers for no account (unknown keys) are not."""

    if getattr(endpoint, "counts_hook_answers", False):
        return endpoint  # wrapped already: count each answer once

    @functools.wraps(endpoint)
    async def route(request: Request) -> Response:
        logs.bind_account(None)
        started, status = time.monotonic(), 500
        try:
            response = await endpoint(request)
            status = response.status_code
            return response
        except MailsyncError as exc:
            status = exc.status_code
            raise
        except HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            account_id = logs.account_id_var.get()
            if account_id is not None:
                engine = request.app.state.resources.engine
                record(engine, account_id, status, seconds=time.monotonic() - started)
                _flush_soon(engine)

    route.counts_hook_answers = True  # type: ignore[attr-defined]
    return route


def _flush_soon(engine: AsyncEngine) -> None:
    if time.monotonic() - _LAST_FLUSH.get(engine, 0.0) < FLUSH_SECONDS:
        return
    _LAST_FLUSH[engine] = time.monotonic()
    task = asyncio.get_running_loop().create_task(_flush_quietly(engine), name="hook-answers-flush")
    _FLUSHING.add(task)  # held until done, so the task is not collected mid-flush
    task.add_done_callback(_FLUSHING.discard)


async def _flush_quietly(engine: AsyncEngine) -> None:
    try:
        await flush(engine)
    except Exception:  # the counts are worth less than the request path: never let them break it
        log.exception("webhook answer counts flush failed")

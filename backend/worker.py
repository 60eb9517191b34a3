"""The job worker: claim → run → retry with backoff → dead-letter.

Each process runs one `Worker` with `WORKER_CONCURRENCY` slots; the queue (jobs.py) makes sure
no two jobs of one account run at once anywhere. Whoever builds the worker hands it the table of
handlers by job kind (`sync.handlers.HANDLERS`).
On stop (SIGTERM) running jobs get a grace period to finish; what is still running then is
released back to the queue without counting the attempt. A vendor that is down, slows us down
or refuses the account holds the account's work without counting attempts (`pauses.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import alerts, circuit, job_batches, jobs, leases, logs, metrics, pauses, repository
from backend.errors import (
    MailsyncError,
    UpstreamError,
    UpstreamForbidden,
    UpstreamUnauthorized,
)
from backend.jobs import ClaimedJob
from backend.kommo.tokens import keep_alive_refresh
from backend.models import JobState, utcnow
from backend.providers import registry
from backend.sync import catchup

if TYPE_CHECKING:
    from backend.resources import Resources

log = logging.getLogger("mailsync.worker")

KEEP_ALIVE_INTERVAL = 86_400.0  # seconds between keep-alive refresh passes
BATCH_SIZE = 250  # Kommo returns 250 leads per read: one batch, one read
Handler = Callable[["Resources", ClaimedJob], Awaitable[None]]
# Runs several jobs of one account and kind at once; returns job id → exception for the failures.
BatchHandler = Callable[["Resources", list[ClaimedJob]], Awaitable[Mapping[int, Exception]]]


class Worker:
    def __init__(
        self,
        resources: Resources,
        *,
        concurrency: int,
        handlers: Mapping[str, Handler],
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        batch_size: int = BATCH_SIZE,
        poll_interval: float = 0.05,
        grace_seconds: float = 20.0,
    ) -> None:
        self.resources = resources
        self.concurrency = concurrency
        self.handlers = handlers
        self.batch_handlers = batch_handlers or {}
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.grace_seconds = grace_seconds
        self.lease = timedelta(seconds=resources.settings.job_lease_seconds)
        # Expired leases are looked for twice per lease: a dead worker's job waits at most
        # about one and a half leases before another worker takes it.
        self.maintenance_interval = min(15.0, resources.settings.job_lease_seconds / 2)
        self.worker_id = f"{leases.this_host()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._last_maintenance = 0.0
        self._last_keep_alive = float("-inf")

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker %s started (concurrency %d; kinds: %s)", self.worker_id,
                 self.concurrency, ", ".join(sorted(self.handlers)) or "none")
        await self._take_over_dead_neighbours()
        while not stop.is_set():
            await self._maintain()
            claimed = await self._claim_free_slots()
            if not claimed:
                await self._idle(stop)
        await self._drain()
        log.info("worker %s stopped", self.worker_id)

    async def _claim_free_slots(self) -> int:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        try:
            async with self.resources.sessions() as session, session.begin():
                claimed = await jobs.claim(session, worker_id=self.worker_id, limit=free,
                                           lease=self.lease)
        except Exception:
            log.exception("claiming jobs failed; retrying after a pause")
            return 0
        for job in claimed:
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda _t, job_id=job.id: self._finished(job_id))
        return len(claimed)

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _take_over_dead_neighbours(self) -> None:
        """A restart after kill -9 need not wait for the dead worker's leases to run out."""
        try:
            async with self.resources.sessions() as session, session.begin():
                if await leases.expire_dead_neighbours(session):
                    released = await jobs.release_expired_leases(session)
                    log.warning("put back %d jobs of a dead worker on this machine", released)
        except Exception:
            log.exception("looking for dead workers' jobs failed")

    async def _maintain(self) -> None:
        now = time.monotonic()
        if now - self._last_maintenance < self.maintenance_interval:
            return
        self._last_maintenance = now
        try:
            async with self.resources.sessions() as session, session.begin():
                released = await jobs.release_expired_leases(session)
            if released:
                log.warning("put back %d jobs whose worker stopped mid-job", released)
        except Exception:
            log.exception("queue maintenance failed")
        await self._schedule_catchups()
        if now - self._last_keep_alive >= KEEP_ALIVE_INTERVAL:
            self._last_keep_alive = now
            await self._keep_tokens_alive()
            await self._purge()

    async def _schedule_catchups(self) -> None:
        """Enqueue the due sweeps of Kommo's event log (`sync/catchup.py`), when this worker runs them."""
        if catchup.KIND not in self.handlers:
            return
        try:
            await catchup.run_due_catchups(self.resources, utcnow())
        except Exception:
            log.exception("scheduling the Kommo catch-up sweeps failed")

    async def _purge(self) -> None:
        """Daily retention, so the queue and inbox tables do not grow without bound."""
        try:
            async with self.resources.sessions() as session, session.begin():
                removed = await jobs.purge(session, jobs_before=utcnow() - jobs.KEEP_DONE_JOBS,
                                           inbox_before=utcnow() - jobs.KEEP_INBOX)
        except Exception:
            log.exception("queue retention failed")
            return
        if any(removed):
            log.info("removed %d finished jobs and %d inbox rows past retention", *removed)

    async def _keep_tokens_alive(self) -> None:
        """Refresh tokens of accounts idle for 30 days: Kommo's refresh tokens die unused after
        three months, and a dead one would need the admin to reinstall."""
        try:
            refreshed = await keep_alive_refresh(self.resources)
        except Exception:
            log.exception("keep-alive token refresh failed")
            return
        if refreshed:
            log.info("refreshed the Kommo tokens of %d idle accounts", refreshed)

    async def _run(self, leader: ClaimedJob) -> None:
        logs.bind_account(leader.account_id)
        async with self.resources.reads() as session:
            holds = await circuit.holds(session, leader.account_id)
        held_until = pauses.blocked(holds, time.time())
        if held_until is not None:  # a vendor is held: nothing runs, no attempt counts
            await self._settle(pauses.wait, leader.account_id, [leader.id], held_until)
            return
        started = time.perf_counter()
        run = [leader, *await self._followers(leader)]
        heartbeat = asyncio.create_task(self._heartbeat(run))
        trace = {"job_id": leader.id, "job_kind": leader.kind, "attempt": leader.attempts,
                 "batch": len(run), "followers": [job.id for job in run[1:]]}
        log.info("job %d started", leader.id, extra={**trace, "at": time.time()})
        try:
            with circuit.watching() as seen:
                failures = await self._call(run)
        except asyncio.CancelledError:
            for job in run:
                await self._settle(jobs.release, job.id)
            raise
        finally:
            heartbeat.cancel()
        # Logged before the outcome is stored, so the account's next job starts after this line.
        log.info("job %d ended", leader.id, extra={**trace, "at": time.time(), "ok": not failures})
        metrics.JOB_DURATION.labels(leader.kind).observe(time.perf_counter() - started)
        for job in run:
            metrics.JOB_ATTEMPTS.labels(job.kind).observe(job.attempts)
        done = [job.id for job in run if job.id not in failures]
        if done:
            await self._settle(jobs.finish_many, done)
        if failures or holds or not all(seen.values()):  # else nothing to write: the usual run
            settled = await self._settle(pauses.settle, leader.account_id, seen, failures, holds,
                                         vendor_name)
            await self._failed(leader.account_id, [job for job in run if job.id in failures],
                               failures, settled)

    async def _failed(self, account_id: int, failed: list[ClaimedJob], failures: Mapping[int, Exception],
                      settled: pauses.Settled) -> None:
        """Jobs whose vendor is now held wait for it, uncharged; the rest retry or end as usual."""
        rest = await self._settle(pauses.hold_failed, account_id, failed, failures, settled)
        for job in rest:
            await self._outcome(job, failures[job.id])

    async def _followers(self, leader: ClaimedJob) -> list[ClaimedJob]:
        """A kind with a batch handler takes the account's other due jobs of that kind along."""
        if leader.kind not in self.batch_handlers or self.batch_size <= 1:
            return []
        async with self.resources.reads() as session:
            if not await job_batches.any_due(session, leader):
                return []
        try:
            return await self._settle(job_batches.take_followers, leader, worker_id=self.worker_id,
                                      limit=self.batch_size - 1, lease=self.lease)
        except DBAPIError:
            # PostgreSQL may pick this claim as a deadlock's victim (webhooks upserting the same
            # jobs meanwhile). Nothing was taken; the leader must still run, not sit orphaned.
            log.warning("could not take job %d's followers along; it runs alone", leader.id,
                        exc_info=True)
            return []

    async def _call(self, run: list[ClaimedJob]) -> dict[int, Exception]:
        """Job id → the exception it failed with; success is absence."""
        kind = run[0].kind
        try:
            if len(run) > 1:
                return dict(await self.batch_handlers[kind](self.resources, run))
            handler = self.handlers.get(kind)
            if handler is None:
                raise UnknownJobKind(f"no handler for job kind {kind!r}")
            await handler(self.resources, run[0])
        except Exception as exc:
            if not isinstance(exc, MailsyncError):
                log.exception("job %d (%s) crashed", run[0].id, kind)
            return {job.id: exc for job in run}
        return {}

    async def _outcome(self, job: ClaimedJob, exc: Exception) -> None:
        error, retry_after, retryable = _classify(exc)
        if _esp_refused_key(exc):
            await self._settle(_key_rejected, job.account_id, exc)
        if not retryable:
            log.info("job %d (%s) ended with a permanent outcome: %s", job.id, job.kind, error)
            await self._settle(jobs.finish, job.id, error=error)
            return
        state = await self._settle(_fail, job, error, retry_after, exc)
        if state == "dead":
            metrics.JOBS_DEAD.labels(job.kind).inc()
            log.error("job %d (%s) is dead after %d attempts: %s", job.id, job.kind,
                      job.attempts, error)

    async def _settle(self, operation: Callable[..., Awaitable], *args, **kwargs):
        # Shielded: a shutdown must not leave a finished job marked running.
        async def write():
            async with self.resources.sessions() as session, session.begin():
                return await operation(session, *args, **kwargs)

        return await asyncio.shield(write())

    async def _heartbeat(self, run: list[ClaimedJob]) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                async with self.resources.sessions() as session, session.begin():
                    await jobs.renew_lease(session, [job.id for job in run], self.worker_id,
                                           self.lease)

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("waiting up to %.0f s for %d running jobs", self.grace_seconds, len(self._running))
        _, pending = await asyncio.wait(list(self._running.values()), timeout=self.grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _fail(session: AsyncSession, job: ClaimedJob, error: str, retry_after: float | None,
                exc: Exception | None) -> str:
    """A retryable failure; a job that gives up tells the admin in the same transaction."""
    state = await jobs.fail(session, job, error, retry_after=retry_after)
    if state == JobState.DEAD:
        await alerts.job_gave_up(session, job.account_id, kind=job.kind, payload=job.payload,
                                 attempts=job.attempts, reason=_plain(exc))
    return state


class UnknownJobKind(MailsyncError):
    code = "unknown_job_kind"
    retryable = True  # a newer release may know it


def _classify(exc: Exception) -> tuple[str, float | None, bool]:
    """(error text for the job row, retry_after, retryable)."""
    if isinstance(exc, UpstreamError):
        return f"{exc.code}: {exc.message}", exc.retry_after, exc.retryable
    if isinstance(exc, MailsyncError):
        return f"{exc.code}: {exc.message}", None, exc.retryable
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}", None, True


def _esp_refused_key(exc: Exception | None) -> bool:
    return (isinstance(exc, UpstreamUnauthorized | UpstreamForbidden)
            and exc.service in {provider.service for provider in registry.all()})


async def _key_rejected(session: AsyncSession, account_id: int, exc: UpstreamError) -> None:
    """The email platform refused the stored key: flag the connection (the widget shows a banner)
    and tell the admin, once per key."""
    connection = await repository.get_esp_connection(session, account_id)
    if connection is not None and await repository.mark_key_rejected(session, account_id):
        provider = registry.get(connection.kind)
        await alerts.esp_key_rejected(session, account_id, platform=provider.display_name,
                                      status=exc.status, key_help=provider.key_help)


def vendor_name(service: str) -> str:
    """"kommo" → "Kommo"; a platform's service → its display name."""
    names = {provider.service: provider.display_name for provider in registry.all()}
    return names.get(service, service.capitalize())


def _plain(exc: Exception | None) -> str:
    """The reason shown to the admin: our own errors carry readable messages; a crash's details
    are for the operator's log only."""
    if isinstance(exc, MailsyncError):
        return exc.message
    return "mailsync hit an internal error (the operator's log has the details)"

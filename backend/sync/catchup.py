"""Catch-up from Kommo's event log: the changes whose webhooks never came.

Kommo loses some webhook deliveries and never resends them, and disables a webhook answered
badly too often. So every `KOMMO_CATCHUP_SECONDS` each account's sweep runs as a `kommo_catchup`
job (`run_due_catchups`, called by the worker loop, enqueues it when due; the queue gives it
fairness between accounts and one run at a time per account across processes). A sweep:
1. checks that our webhook still exists and is enabled, and subscribes it again if Kommo dropped
   it (`catchup_webhook.py`, as the install does), telling the admin in the activity log;
2. reads `GET /api/v4/events` for the lead, contact, link and email-field changes created since
   the stored cursor, 100 per page, every call through the account's Kommo budget;
3. enqueues a reconcile for each lead or contact whose change we have not provably applied
   (`catchup_plan.py`; a pending job for the same entity absorbs it), and moves the cursor in the
   same transaction.

The cursor: every event up to `cursor_at` was read. A window reads [cursor_at − OVERLAP, now]
(Kommo's clock and ours differ, and an event may be logged a moment after its time): the ids
read in the last OVERLAP seconds of a window are kept (`seen`), so the next window acts on none of
them twice. A window longer than PAGES_PER_RUN pages continues in the next job, at once but after
the account's other jobs. An account's cursor starts when the worker first sees it (or, swept
before that, KOMMO_CATCHUP_SECONDS back). An idle sweep costs two Kommo calls: the webhook list
and one events page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from backend import contact_states, jobs, kommo_catchups, repository
from backend.errors import PermanentRefusal, UpstreamError
from backend.jobs import ClaimedJob, JobSpec
from backend.kommo import events as kommo_events
from backend.kommo.client import KommoClient
from backend.kommo.events import Event
from backend.models import AccountStatus, KommoCatchup, utcnow
from backend.sync import catchup_plan, catchup_webhook
from backend.sync.account import AccountSync
from backend.sync.work import ReconcileContact, ReconcileLead

if TYPE_CHECKING:
    from backend.resources import Resources
    from backend.settings import Settings

log = logging.getLogger("mailsync.sync.catchup")

KIND = "kommo_catchup"
DEFAULT_SECONDS = 300
OVERLAP = 60
PAGES_PER_RUN = 10
MAX_LOOKBACK = timedelta(hours=24)


@dataclass(frozen=True)
class Sweep:
    active: bool = True  # False: the account is gone or not active; nothing was read
    events: int = 0  # new events read
    leads: tuple[int, ...] = ()  # reconciles enqueued
    contacts: tuple[int, ...] = ()
    skipped: int = 0  # leads and contacts whose change was already applied
    more: bool = False  # the window continues in the next job
    webhook: str | None = None  # present | resubscribed | missing | unchecked; None: not this run


def interval(settings: Settings) -> int:
    """KOMMO_CATCHUP_SECONDS (default 300)."""
    return int(getattr(settings, "kommo_catchup_seconds", DEFAULT_SECONDS))


def job_spec(account_id: int) -> JobSpec:
    return JobSpec(account_id, KIND, f"{KIND}:{account_id}", {})


def _offset(account_id: int, seconds: int) -> timedelta:
    """Where in the interval an account's sweeps fall: spread, so that thousands of accounts
    scheduled at once do not all sweep in the same second."""
    return timedelta(seconds=(account_id * 7919) % seconds)


async def run_due_catchups(resources: Resources, now: datetime) -> int:
    """For a worker loop, every few seconds: schedules the first sweep of every active account
    that has none (one interval on, plus its offset; the cursor starts now), and enqueues a
    `kommo_catchup` job for each account whose sweep is due, moving its due time one interval on
    in the same statement (two processes never both take an account). Returns the jobs enqueued.

    Due times live in `kommo_catchup`, not in pending jobs: a job waiting for its time would
    count as pending work in every account's stats and queue depth, forever."""
    seconds = interval(resources.settings)
    async with resources.sessions() as session, session.begin():
        missing = await kommo_catchups.accounts_without_catchup(session)
        await kommo_catchups.add_kommo_catchups(session, [
            KommoCatchup(account_id=account_id, cursor_at=_whole(now), seen={},
                         next_at=now + timedelta(seconds=seconds) + _offset(account_id, seconds))
            for account_id in missing])
        due = await kommo_catchups.claim_due_catchups(session, now, now + timedelta(seconds=seconds))
        await jobs.enqueue(session, [job_spec(account_id) for account_id in due])
    return len(due)


async def handle(resources: Resources, job: ClaimedJob) -> None:
    """The job handler (`sync.handlers.HANDLERS[KIND]`). Kommo failing is not retried here: the
    cursor did not move, so the next due sweep reads the same window (no retry storm, no dead
    letter while Kommo is down). A window with more pages continues at once, as a new job after
    the account's other due jobs."""
    try:
        sweep = await catch_up(resources, job.account_id)
    except UpstreamError as exc:
        log.warning("catch-up from Kommo's event log failed; the next sweep reads the same window: "
                    "%s (%s)", exc.code, exc.message)
        return
    if sweep.more:
        async with resources.sessions() as session, session.begin():
            await jobs.enqueue(session, [job_spec(job.account_id)])


async def catch_up(resources: Resources, account_id: int, *, now: datetime | None = None) -> Sweep:
    now = now or utcnow()
    async with resources.reads() as session:
        account = await repository.get_account(session, account_id)
        row = await kommo_catchups.get_kommo_catchup(session, account_id)
    if account is None or account.status != AccountStatus.ACTIVE:
        return Sweep(active=False)
    seconds = interval(resources.settings)
    row = row or KommoCatchup(account_id=account_id, seen={}, next_at=now + timedelta(seconds=seconds),
                              cursor_at=_whole(now) - timedelta(seconds=seconds))
    ctx = await AccountSync.load(resources, account_id)
    if ctx is None:  # no email platform connected: nothing to catch up, and no old changes later
        _restart(row, now)
        await _commit(resources, row, [])
        return Sweep()
    webhook = None
    if row.next_page == 1:  # a window continued from the previous job was checked then
        webhook = await catchup_webhook.check(resources, ctx.kommo, account, row, now,
                                              sweep_seconds=seconds)
        if webhook in ("resubscribed", "missing"):
            await _commit(resources, row, [])  # what the admin was told, even if the read fails
    if row.email_field_id is None:
        row.email_field_id = await kommo_events.email_field_id(ctx.kommo) or 0
    start, end = _window(row, now)
    read, more, page = await _read(ctx.kommo, row, start, end)
    fresh = _unseen(read, row, start, end)
    known = await _known(resources, ctx, fresh)
    plan = catchup_plan.plan(fresh, known)
    specs = [*(ReconcileLead(lead_id=i, action="catch_up").to_spec(account_id) for i in plan.leads),
             *(ReconcileContact(contact_id=i, action="catch_up").to_spec(account_id) for i in plan.contacts)]
    _advance(row, fresh, more=more, page=page, end=end, now=now, enqueued=len(specs))
    await _commit(resources, row, specs)
    if specs:
        log.info("catch-up: %d changes found in Kommo's event log that were not applied yet",
                 len(specs), extra={"events": len(fresh), "skipped": plan.skipped})
    return Sweep(events=len(fresh), leads=plan.leads, contacts=plan.contacts, skipped=plan.skipped,
                 more=more, webhook=webhook)


# --- the window and its events ---------------------------------------------------------------


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _whole(moment: datetime) -> datetime:
    return datetime.fromtimestamp(_ts(moment), UTC)


def _window(row: KommoCatchup, now: datetime) -> tuple[int, int]:
    """[start, end] in Unix seconds. A new window never reaches back further than MAX_LOOKBACK
    (an account paused for days: how long Kommo keeps events is not documented)."""
    if row.window_to is not None:
        return _ts(row.cursor_at) - OVERLAP, _ts(row.window_to)
    row.cursor_at = max(row.cursor_at, _whole(now) - MAX_LOOKBACK)
    return _ts(row.cursor_at) - OVERLAP, _ts(now)


async def _read(client: KommoClient, row: KommoCatchup, start: int, end: int
                ) -> tuple[list[Event], bool, int]:
    """Up to PAGES_PER_RUN pages from `row.next_page`: (events, more pages left, last page read)."""
    found: list[Event] = []
    page = row.next_page
    for _ in range(PAGES_PER_RUN):
        result = await _page(client, row, start, end, page)
        found += result.events
        if not result.has_next:
            return found, False, page
        page += 1
    return found, True, page - 1


async def _page(client: KommoClient, row: KommoCatchup, start: int, end: int,
                page: int) -> kommo_events.EventsPage:
    def read(field_id: int | None):
        return kommo_events.events_page(client, event_types=kommo_events.sweep_types(field_id),
                                        created_from=start, created_to=end, page=page)

    try:
        return await read(row.email_field_id)
    except PermanentRefusal as refusal:
        # The email field's change type is the one type read from the account's own fields; if
        # Kommo refuses it, sweep without it from now on (contact webhooks still carry edits).
        if not row.email_field_id or refusal.status not in (400, 422):
            raise
        log.warning("Kommo refused the email field's event type; sweeping without it")
        row.email_field_id = 0
        return await read(None)


def _unseen(events: list[Event], row: KommoCatchup, start: int, end: int) -> list[Event]:
    """New events in the window, oldest first, each once."""
    fresh: dict[str, Event] = {}
    for event in sorted(events, key=lambda e: e.order):
        if event.id not in row.seen and start <= event.created_at <= end:
            fresh.setdefault(event.id, event)
    return list(fresh.values())


def _advance(row: KommoCatchup, fresh: list[Event], *, more: bool, page: int, end: int,
             now: datetime, enqueued: int) -> None:
    seen = {**row.seen, **{event.id: event.created_at for event in fresh}}
    if more:  # the same window goes on from the next page; the previous window's ids stay
        cursor = _ts(row.cursor_at)
        row.window_to, row.next_page = datetime.fromtimestamp(end, UTC), page + 1
        row.seen = {i: at for i, at in seen.items() if at <= cursor or at >= end - OVERLAP}
    else:
        row.cursor_at, row.window_to, row.next_page = datetime.fromtimestamp(end, UTC), None, 1
        row.seen = {i: at for i, at in seen.items() if at >= end - OVERLAP}
    row.last_run_at = now
    row.enqueued_total += enqueued


def _restart(row: KommoCatchup, now: datetime) -> None:
    row.cursor_at, row.window_to, row.next_page = _whole(now), None, 1
    row.seen, row.last_run_at = {}, now


async def _known(resources: Resources, ctx: AccountSync, events: list[Event]) -> catchup_plan.Known:
    leads, contacts = catchup_plan.by_entity(events)
    async with resources.reads() as session:
        deciding = await contact_states.contact_states_deciding(session, ctx.account_id, list(leads))
        states = await contact_states.get_contact_states(session, ctx.account_id, list(contacts))
    return catchup_plan.Known(ctx.mapping, ctx.options, deciding, states)


async def _commit(resources: Resources, row: KommoCatchup, specs: list[JobSpec]) -> None:
    """The reconciles and the cursor that no longer covers their events, together."""
    async with resources.sessions() as session, session.begin():
        await jobs.enqueue(session, specs)
        await kommo_catchups.save_kommo_catchup(session, row)

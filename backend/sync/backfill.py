"""The initial sync of an account's existing leads (docs/ARCHITECTURE.md §3, `/api/widget/backfill`).

Pages of 250 leads in mapped stages go through the batched reconcile (`batch.py`), one page per
job. Progress is stored with the page, in the transaction that queues the next one, so a killed
worker resumes at the page it was on and never sends a finished page again. Live webhooks keep
flowing: jobs of one account run one at a time, so a lead moved during the backfill is reconciled
after the page that read it, from Kommo's newest state.

A dry run writes nothing to the platform: it counts what a real run would do — how many
addresses are new to the platform, already there, already opted out, skipped and why — so the
admin chooses how new subscribers join (`subscribed`, `unconfirmed`: double opt-in, or `skip`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backend import backfills, jobs
from backend.errors import Conflict, UpstreamError, UpstreamRateLimited, UpstreamUnavailable
from backend.models import Activity, Backfill, BackfillState, utcnow
from backend.providers.base import OPTED_OUT, Consent, EspStatus
from backend.sync import batch
from backend.sync.account import AccountSync
from backend.sync.work import BackfillPage

if TYPE_CHECKING:
    from backend.resources import Resources

CHOICES = ("subscribed", "unconfirmed", "skip")
SKIP_REASONS = {"skipped: no email": "no_email", "skipped: no consent": "no_consent",
                "skipped: invalid email": "invalid_email",
                "skipped: the lead has no contact": "no_email"}  # no contact, no address


def empty_counts() -> dict[str, Any]:
    return {"skipped": {"no_email": 0, "no_consent": 0, "opted_out": 0, "invalid_email": 0},
            "new_subscribers": 0, "existing": 0, "duplicates": 0, "already_opted_out": 0,
            "errors": 0}


async def start(resources: Resources, account_id: int, *, dry_run: bool,
                new_subscribers_as: str) -> int:
    """A new run and its first page's job, in one transaction; 409 while one runs."""
    async with resources.sessions() as session, session.begin():
        latest = await backfills.latest_backfill(session, account_id)
        if latest is not None and latest.state == BackfillState.RUNNING:
            raise Conflict("a sync of existing leads is already running", code="backfill_running")
        run = await backfills.add_backfill(session, Backfill(
            account_id=account_id, dry_run=dry_run, new_subscribers_as=new_subscribers_as,
            counts=empty_counts()))
        await jobs.enqueue(session, [BackfillPage(run.id).to_spec(account_id)])
        return run.id


async def run_page(resources: Resources, account_id: int, backfill_id: int) -> None:
    ctx = await AccountSync.load(resources, account_id)
    async with resources.reads() as session:
        run = await backfills.get_backfill(session, account_id, backfill_id)
    if run is None or run.state != BackfillState.RUNNING:
        return
    if ctx is None:
        await _finish(resources, run, BackfillState.FAILED, "the account or its email platform "
                      "was disconnected")
        return
    page = await ctx.kommo.leads_page(run.next_page, stages=sorted(ctx.mapping.stages))
    counts = dict(run.counts)
    decisions, notes = await batch.decide(ctx, page.leads)
    _count_skips(notes, counts)
    decisions = await _sort_new(ctx, run, decisions, counts)
    if not run.dry_run:
        failures = await batch.write(ctx, decisions, notes,
                                     None if _counted_already(run) else counts)
        if failures:  # passing failures: the page runs again (idempotent), nothing is counted twice
            raise _retry_page(failures, ctx.provider.service)
    await _advance(resources, run, counts, len(page.leads), page.has_next)


def _retry_page(failures: Mapping[int, Exception], service: str) -> UpstreamError:
    """Not before the platform said: a page retried early reads its leads from Kommo again only
    to be refused again."""
    message = f"{len(failures)} leads hit a passing failure; the page is tried again"
    waits = [e.retry_after for e in failures.values()
             if isinstance(e, UpstreamRateLimited) and e.retry_after is not None]
    if waits:
        return UpstreamRateLimited(message, service=service, retry_after=max(waits))
    return UpstreamUnavailable(message, service=service)


def _counted_already(run: Backfill) -> bool:
    """A preview and `skip` count new and existing addresses from the look-up; the other real
    runs learn them from the writes' answers."""
    return run.dry_run or run.new_subscribers_as == "skip"


def _count_skips(notes: list[Activity], counts: dict[str, Any]) -> None:
    for note in notes:
        reason = SKIP_REASONS.get(note.summary)
        if reason:
            counts["skipped"][reason] += 1
        elif note.summary.startswith("skipped: lead"):
            counts["duplicates"] += 1


async def _sort_new(ctx: AccountSync, run: Backfill, decisions: list[batch.Decision],
                    counts: dict[str, Any]) -> list[batch.Decision]:
    """Count new, existing and opted-out addresses, and apply the admin's choice for the new ones.
    Only a preview or `skip` needs to ask the platform; `status_if_new`-style writes decide the
    rest on their own."""
    if not _counted_already(run):
        return [_as_new(d) if run.new_subscribers_as == "unconfirmed" else d for d in decisions]
    held = await ctx.provider.lookup([d.plan.email for d in decisions])
    kept = []
    for d in decisions:
        if d.state is not None and d.state.esp_status and EspStatus.parse(d.state.esp_status) in OPTED_OUT:
            counts["skipped"]["opted_out"] += 1  # gets its segments, never a subscription
        subscriber = held.get(d.plan.email)
        if subscriber is None:
            counts["new_subscribers"] += 1
            if run.new_subscribers_as == "skip":
                continue
        else:
            counts["existing"] += 1
            counts["already_opted_out"] += subscriber.status in OPTED_OUT
        kept.append(d)
    return kept


def _as_new(decision: batch.Decision) -> batch.Decision:
    """Double opt-in for addresses the platform lacks (existing ones keep their status)."""
    return dataclasses.replace(decision, plan=dataclasses.replace(decision.plan, consent=Consent.PENDING))


async def _advance(resources: Resources, run: Backfill, counts: dict[str, Any], leads: int,
                   has_next: bool) -> None:
    async with resources.sessions() as session, session.begin():
        row = await backfills.get_backfill(session, run.account_id, run.id)
        row.counts, row.total, row.done = counts, row.total + leads, row.done + leads
        row.next_page += 1
        if has_next:
            await jobs.enqueue(session, [BackfillPage(row.id).to_spec(row.account_id)])
        else:
            row.state, row.finished_at = BackfillState.DONE, utcnow()
        session.add(row)


async def _finish(resources: Resources, run: Backfill, state: str, error: str) -> None:
    async with resources.sessions() as session, session.begin():
        row = await backfills.get_backfill(session, run.account_id, run.id)
        row.state, row.error, row.finished_at = state, error, utcnow()
        session.add(row)

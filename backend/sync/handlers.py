"""Job kind → the function that runs it. Whoever builds a worker hands it `HANDLERS`, and
`BATCH_HANDLERS` for the kinds that run many jobs of one account at once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from backend import inbox
from backend.jobs import ClaimedJob
from backend.sync import backfill, batch, catchup, reconcile, reverse
from backend.sync.work import (
    ApplyEspEvent,
    BackfillPage,
    ReconcileContact,
    ReconcileLead,
    SplitEspBatch,
)

if TYPE_CHECKING:
    from backend.resources import Resources

log = logging.getLogger("mailsync.sync")
SPLIT_CHUNK = 500  # events per transaction when a platform's batch is split (see below)
Handler = Callable[["Resources", ClaimedJob], Awaitable[None]]


async def _reconcile_lead(resources: Resources, job: ClaimedJob) -> None:
    work = ReconcileLead.from_payload(job.payload)
    await reconcile.reconcile_lead(resources, job.account_id, work.lead_id)


async def _reconcile_contact(resources: Resources, job: ClaimedJob) -> None:
    work = ReconcileContact.from_payload(job.payload)
    await reconcile.reconcile_contact(resources, job.account_id, work.contact_id)


async def _backfill_page(resources: Resources, job: ClaimedJob) -> None:
    await backfill.run_page(resources, job.account_id, BackfillPage.from_payload(job.payload).backfill_id)


async def _apply_esp_event(resources: Resources, job: ClaimedJob) -> None:
    await reverse.apply_esp_event(resources, job.account_id, ApplyEspEvent.from_payload(job.payload).event)


async def _split_esp_batch(resources: Resources, job: ClaimedJob) -> None:
    """One inbox row and `esp_event` job per event of the batch; an event already stored (a
    redelivery, or the same event in an earlier batch) adds nothing. In transactions of
    `SPLIT_CHUNK`: one transaction of 8,000 held SQLite's only write lock for ~1.4 s (webhook
    acknowledgements queue behind it) and the event loop of a web process with an embedded
    worker as long. A worker that stops between two chunks loses nothing: the retry stores
    what is missing, the rest is recognised by its dedupe keys."""
    work = SplitEspBatch.from_payload(job.payload)
    deliveries = work.deliveries(job.account_id)
    new = 0
    for start in range(0, len(deliveries), SPLIT_CHUNK):
        async with resources.sessions() as session, session.begin():
            connection = await session.connection()
            stored = await connection.run_sync(inbox.store_sync, deliveries[start:start + SPLIT_CHUNK])
        new += len(stored)
    log.info("split a batch of %d platform events: %d new", len(deliveries), new)


HANDLERS: dict[str, Handler] = {
    ReconcileLead.KIND: _reconcile_lead,
    ReconcileContact.KIND: _reconcile_contact,
    ApplyEspEvent.KIND: _apply_esp_event,
    SplitEspBatch.KIND: _split_esp_batch,
    BackfillPage.KIND: _backfill_page,
    catchup.KIND: catchup.handle,
}


async def _reconcile_leads(resources: Resources, run: list[ClaimedJob]) -> Mapping[int, Exception]:
    """Several due lead jobs of one account: one batch; a lead's failure fails only its jobs."""
    jobs_of: dict[int, list[ClaimedJob]] = {}
    for job in run:
        jobs_of.setdefault(ReconcileLead.from_payload(job.payload).lead_id, []).append(job)
    failures = await batch.reconcile_leads(resources, run[0].account_id, list(jobs_of))
    return {job.id: exc for lead_id, exc in failures.items() for job in jobs_of[lead_id]}


BatchHandler = Callable[["Resources", list[ClaimedJob]], Awaitable[Mapping[int, Exception]]]
BATCH_HANDLERS: dict[str, BatchHandler] = {ReconcileLead.KIND: _reconcile_leads}

"""Job kind → the function that runs it. Whoever builds a worker hands it `HANDLERS`, and
`BATCH_HANDLERS` for the kinds that run many jobs of one account at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from backend.jobs import ClaimedJob
from backend.sync import backfill, batch, reconcile, reverse
from backend.sync.work import ApplyEspEvent, BackfillPage, ReconcileContact, ReconcileLead

if TYPE_CHECKING:
    from backend.resources import Resources

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


HANDLERS: dict[str, Handler] = {
    ReconcileLead.KIND: _reconcile_lead,
    ReconcileContact.KIND: _reconcile_contact,
    ApplyEspEvent.KIND: _apply_esp_event,
    BackfillPage.KIND: _backfill_page,
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

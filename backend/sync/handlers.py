"""Job kind → the function that runs it. Whoever builds a worker hands it `HANDLERS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from backend.jobs import ClaimedJob
from backend.sync import reconcile, reverse
from backend.sync.work import ApplyEspEvent, ReconcileContact, ReconcileLead

if TYPE_CHECKING:
    from backend.resources import Resources

Handler = Callable[["Resources", ClaimedJob], Awaitable[None]]


async def _reconcile_lead(resources: Resources, job: ClaimedJob) -> None:
    work = ReconcileLead.from_payload(job.payload)
    await reconcile.reconcile_lead(resources, job.account_id, work.lead_id)


async def _reconcile_contact(resources: Resources, job: ClaimedJob) -> None:
    work = ReconcileContact.from_payload(job.payload)
    await reconcile.reconcile_contact(resources, job.account_id, work.contact_id)


async def _apply_esp_event(resources: Resources, job: ClaimedJob) -> None:
    await reverse.apply_esp_event(resources, job.account_id, ApplyEspEvent.from_payload(job.payload).event)


HANDLERS: dict[str, Handler] = {
    ReconcileLead.KIND: _reconcile_lead,
    ReconcileContact.KIND: _reconcile_contact,
    ApplyEspEvent.KIND: _apply_esp_event,
}

"""Job kinds and the functions that run them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.sync.jobs import ClaimedJob
from backend.worker import handles

if TYPE_CHECKING:
    from backend.services import Services


@handles("reconcile_lead")
async def reconcile_lead(services: Services, job: ClaimedJob) -> None:
    from backend.sync import reconcile

    await reconcile.reconcile_lead(services, job.account_id, int(job.payload["lead_id"]))


@handles("reconcile_contact")
async def reconcile_contact(services: Services, job: ClaimedJob) -> None:
    from backend.sync import reconcile

    await reconcile.reconcile_contact(services, job.account_id, int(job.payload["contact_id"]),
                                      job.payload)


@handles("esp_event")
async def esp_event(services: Services, job: ClaimedJob) -> None:
    from backend.sync import reverse

    await reverse.apply_esp_event(services, job.account_id, job.payload)

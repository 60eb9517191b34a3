"""Kommo → ESP: reconcile a lead or a contact (level-triggered). Filled in by the sync issue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.services import Services


async def reconcile_lead(services: Services, account_id: int, lead_id: int) -> None:
    raise NotImplementedError("lead reconciliation arrives with the sync-semantics issue")


async def reconcile_contact(
    services: Services, account_id: int, contact_id: int, hints: dict[str, Any]
) -> None:
    raise NotImplementedError("contact reconciliation arrives with the sync-semantics issue")

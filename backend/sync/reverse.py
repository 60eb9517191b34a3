"""ESP → Kommo: opt-outs become notes and tags. Filled in by the sync issue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.services import Services


async def apply_esp_event(services: Services, account_id: int, event: dict[str, Any]) -> None:
    raise NotImplementedError("ESP events arrive with the sync-semantics issue")

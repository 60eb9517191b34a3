"""JSON views of stored state, shared by the widget API routes (ARCHITECTURE §3)."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from backend import repository
from backend.models import Account, EspConnection, MappingRule

DEFAULT_OPTIONS: dict[str, Any] = {
    "consent_field_id": None,
    "no_consent": "skip",
    "new_contact_segment_id": None,
    "notes_on_sync": False,
    "email_choice": "first",
    "all_lead_contacts": False,
    "field_map": [],
    "on_contact_delete": "remove",
}


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def provider_body(connection: EspConnection | None) -> dict[str, Any] | None:
    if connection is None:
        return None
    body: dict[str, Any] = {"kind": connection.kind, "label": connection.label,
                            "status": "key_rejected" if connection.key_rejected_at else "ok"}
    if connection.list_id is not None:
        body["list_id"] = connection.list_id
        body["list_name"] = connection.list_name
    return body


def rule_body(rule: MappingRule) -> dict[str, Any]:
    body: dict[str, Any] = {"pipeline_id": rule.pipeline_id, "status_id": rule.status_id,
                            "action": rule.action}
    if rule.segment_id is not None:
        body["segment_id"] = rule.segment_id
    return body


async def account_body(session: AsyncSession, account: Account) -> dict[str, Any]:
    """`GET /api/widget/account` (also the answer of provider and mapping writes)."""
    stats = await repository.account_stats(session, account.id)
    return {
        "account_id": account.id,
        "subdomain": account.subdomain,
        "status": account.status,
        "provider": provider_body(await repository.get_esp_connection(session, account.id)),
        "mapping": {"rules": [rule_body(r) for r in await repository.get_mapping(session, account.id)]},
        "options": {**DEFAULT_OPTIONS, **await repository.get_options(session, account.id)},
        "stats": {"synced_contacts": stats.synced_contacts, "pending_jobs": stats.pending_jobs,
                  "failed_jobs": stats.failed_jobs, "last_sync_at": iso(stats.last_sync_at)},
    }

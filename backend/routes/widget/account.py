"""`GET /api/widget/account` (also the answer of the provider and mapping writes), and the
account's Kommo pipelines and contact fields, read live with the account's own token."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend import repository
from backend.connections import family_of
from backend.kommo.client import KommoClient
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import Account, EspConnection, MappingRule
from backend.sync.options import SyncOptions


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def provider_body(connection: EspConnection | None) -> dict[str, Any] | None:
    if connection is None:
        return None
    body: dict[str, Any] = {"kind": family_of(connection), "label": connection.label,
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
    stats = await repository.account_stats(session, account.id)
    options = SyncOptions.from_stored(await repository.get_options(session, account.id))
    return {
        "account_id": account.id,
        "subdomain": account.subdomain,
        "status": account.status,
        "provider": provider_body(await repository.get_esp_connection(session, account.id)),
        "mapping": {"rules": [rule_body(r) for r in await repository.get_mapping(session, account.id)]},
        "options": options.to_json(),
        "stats": {"synced_contacts": stats.synced_contacts, "pending_jobs": stats.pending_jobs,
                  "failed_jobs": stats.failed_jobs, "last_sync_at": iso(stats.last_sync_at)},
    }


async def answer(request: Request, ctx: WidgetContext) -> JSONResponse:
    async with request.app.state.resources.sessions() as session:
        return JSONResponse(await account_body(session, ctx.account))


@widget_endpoint()
async def get_account(request: Request, ctx: WidgetContext) -> JSONResponse:
    return await answer(request, ctx)


def _kommo(request: Request, ctx: WidgetContext) -> KommoClient:
    return KommoClient(request.app.state.resources, ctx.account_id, host=ctx.account.host)


@widget_endpoint()
async def get_pipelines(request: Request, ctx: WidgetContext) -> JSONResponse:
    """`[{id, name, stages: [{id, name, color}]}]`."""
    pipelines = await _kommo(request, ctx).pipelines()
    return JSONResponse([
        {"id": p.id, "name": p.name,
         "stages": [{"id": s.id, "name": s.name, "color": s.color} for s in p.stages]}
        for p in pipelines])


@widget_endpoint()
async def get_contact_fields(request: Request, ctx: WidgetContext) -> JSONResponse:
    """The account's contact custom fields, for the consent-field picker and the field map."""
    fields = await _kommo(request, ctx).custom_fields("contacts")
    return JSONResponse([{"id": f.id, "name": f.name, "type": f.type} for f in fields])


routes = [
    Route("/api/widget/account", get_account, methods=["GET"]),
    Route("/api/widget/pipelines", get_pipelines, methods=["GET"]),
    Route("/api/widget/contact-fields", get_contact_fields, methods=["GET"]),
]

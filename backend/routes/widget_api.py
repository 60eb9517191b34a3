"""The widget's API (`/api/widget/*`), every route authenticated by `widget_endpoint`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.kommo.client import KommoClient
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.views import account_body


@widget_endpoint()
async def get_account(request: Request, context: WidgetContext) -> JSONResponse:
    async with request.app.state.services.sessions() as session:
        return JSONResponse(await account_body(session, context.account))


@widget_endpoint()
async def get_pipelines(request: Request, context: WidgetContext) -> JSONResponse:
    """Read live from Kommo with the account's own token: `[{id, name, stages: [...]}]`."""
    client = KommoClient(request.app.state.services, context.account_id, host=context.account.host)
    pipelines = await client.pipelines()
    return JSONResponse([
        {"id": p.id, "name": p.name,
         "stages": [{"id": s.id, "name": s.name, "color": s.color} for s in p.stages]}
        for p in pipelines])


@widget_endpoint()
async def get_contact_fields(request: Request, context: WidgetContext) -> JSONResponse:
    """The account's contact custom fields, for the consent-field picker and the field map."""
    client = KommoClient(request.app.state.services, context.account_id, host=context.account.host)
    fields = await client.custom_fields("contacts")
    return JSONResponse([{"id": f.id, "name": f.name, "type": f.type} for f in fields])


routes = [
    Route("/api/widget/account", get_account, methods=["GET"]),
    Route("/api/widget/pipelines", get_pipelines, methods=["GET"]),
    Route("/api/widget/contact-fields", get_contact_fields, methods=["GET"]),
]

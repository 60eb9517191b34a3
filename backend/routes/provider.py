"""Connect, inspect and disconnect the account's ESP (ARCHITECTURE §3, widget API).

PUT validates the key live before anything is stored. The connection row (with its new hook key)
is committed *before* our webhook is registered, because Mailchimp GETs the URL and only accepts
it when we answer; if registration then fails the row is removed again, so nothing stays stored.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import providers, repository
from backend.errors import NotFound, Unprocessable, UpstreamError
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import EspConnection
from backend.providers.base import EmailProvider
from backend.routes.bodies import json_object
from backend.security import new_hook_key
from backend.sync import jobs
from backend.views import account_body

log = logging.getLogger("mailsync.provider")
KINDS = ("mailerlite", "mailchimp")


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str | int):
        raise Unprocessable(f"`{name}` must be a string", code="invalid_request")
    return str(value).strip() or None if value is not None else None


async def _answer(request: Request, ctx: WidgetContext) -> JSONResponse:
    async with request.app.state.services.sessions() as session:
        return JSONResponse(await account_body(session, ctx.account))


async def _connect(services: Any, kind: str, api_key: str,
                   list_id: str | None) -> tuple[EmailProvider, str, bool]:
    """Validate live; MailerLite keys are tried as the shape suggests (new vs Classic), then the
    other API, and the one that answers is recorded."""
    if kind == "mailchimp":
        provider = providers.from_key(services, kind, api_key, list_id=list_id)
        return provider, await provider.validate(), False
    guess = providers.looks_classic(api_key)
    order = (True, False) if guess else (False, True)
    for classic in order:
        provider = providers.from_key(services, kind, api_key, classic=classic)
        try:
            return provider, await provider.validate(), classic
        except Unprocessable:
            if classic == order[-1]:
                raise
    raise AssertionError("unreachable")


async def _pick_list(provider: EmailProvider, list_id: str | None) -> tuple[str | None, str | None]:
    """(list_id, list_name): a given list must exist; with none given, the only audience."""
    if provider.kind != "mailchimp":
        return None, None
    audiences = await provider.list_lists()
    if list_id is not None:
        match = next((a for a in audiences if a.id == list_id), None)
        if match is None:
            raise Unprocessable("this Mailchimp account has no such audience", code="invalid_list")
        return match.id, match.name
    if len(audiences) == 1:
        return audiences[0].id, audiences[0].name
    return None, None


@widget_endpoint(write=True)
async def put_provider(request: Request, ctx: WidgetContext) -> Response:
    services = request.app.state.services
    body = await json_object(request)
    kind = _text(body, "kind")
    if kind not in KINDS:
        raise Unprocessable("kind must be mailerlite or mailchimp", code="invalid_provider")
    async with services.sessions() as session:
        old = await repository.get_esp_connection(session, ctx.account_id)
    api_key = _text(body, "api_key") or (services.vault.decrypt(old.api_key_enc)
                                         if old is not None and old.kind == kind else None)
    if not api_key:
        raise Unprocessable("an API key is required", code="invalid_api_key")
    provider, label, classic = await _connect(services, kind, api_key, None)
    list_id, list_name = await _pick_list(provider, _text(body, "list_id"))
    if list_id is not None:
        provider = providers.from_key(services, kind, api_key, list_id=list_id)
        label = f"Mailchimp ({list_name})"
    if old is not None:
        await _drop_webhook(services, old)
    connection = EspConnection(
        account_id=ctx.account_id, kind=kind, api_key_enc=services.vault.encrypt(api_key),
        label=label, list_id=list_id, list_name=list_name,
        dc=getattr(provider, "dc", None), classic=classic, hook_key=new_hook_key())
    await _store(services, ctx.account_id, connection)
    if kind == "mailerlite" or list_id is not None:
        await _register(services, provider, connection)
    return await _answer(request, ctx)


async def _store(services: Any, account_id: int, connection: EspConnection) -> None:
    async with services.sessions() as session:
        await repository.delete_esp_connection(session, account_id)
        await session.flush()
        await repository.save_esp_connection(session, connection)
        await jobs.run_now(session, account_id)  # work that waited for a working key goes now
        await session.commit()


async def _register(services: Any, provider: EmailProvider, connection: EspConnection) -> None:
    url = f"{services.settings.public_url}/webhooks/{connection.kind}/{connection.hook_key}"
    try:
        webhook = await provider.register_webhook(url)
    except Exception:
        async with services.sessions() as session:
            await repository.delete_esp_connection(session, connection.account_id)
            await session.commit()
        raise
    async with services.sessions() as session:
        row = await repository.get_esp_connection(session, connection.account_id)
        if row is None:  # disconnected meanwhile
            return
        row.webhook_id = webhook.id
        row.webhook_secret_enc = services.vault.encrypt(webhook.secret) if webhook.secret else None
        await repository.save_esp_connection(session, row)
        await session.commit()


async def _drop_webhook(services: Any, connection: EspConnection) -> None:
    """Best effort: a revoked key or an unreachable ESP must not keep the admin connected; a
    webhook left behind posts to a hook key we no longer know (404)."""
    if not connection.webhook_id:
        return
    try:
        await providers.build(connection, services).delete_webhook(connection.webhook_id)
    except UpstreamError as exc:
        log.warning("could not remove the %s webhook: %s", connection.kind, exc.message)


@widget_endpoint(write=True)
async def delete_provider(request: Request, ctx: WidgetContext) -> Response:
    services = request.app.state.services
    async with services.sessions() as session:
        connection = await repository.get_esp_connection(session, ctx.account_id)
    if connection is not None:
        await _drop_webhook(services, connection)
        async with services.sessions() as session:
            await repository.delete_esp_connection(session, ctx.account_id)
            await session.commit()
    return await _answer(request, ctx)


async def _provider(request: Request, ctx: WidgetContext) -> EmailProvider:
    services = request.app.state.services
    async with services.sessions() as session:
        connection = await repository.get_esp_connection(session, ctx.account_id)
    if connection is None:
        raise NotFound("connect MailerLite or Mailchimp first", code="provider_not_connected")
    return providers.build(connection, services)


@widget_endpoint()
async def get_lists(request: Request, ctx: WidgetContext) -> Response:
    lists = await (await _provider(request, ctx)).list_lists()
    return JSONResponse([{"id": a.id, "name": a.name, "member_count": a.member_count}
                         for a in lists])


@widget_endpoint()
async def get_segments(request: Request, ctx: WidgetContext) -> Response:
    segments = await (await _provider(request, ctx)).list_segments()
    return JSONResponse([{"id": s.id, "name": s.name} for s in segments])


@widget_endpoint(write=True)
async def post_segment(request: Request, ctx: WidgetContext) -> Response:
    name = _text(await json_object(request), "name")
    if not name or len(name) > 100:
        raise Unprocessable("a segment name of 1 to 100 characters is required",
                            code="invalid_segment")
    segment = await (await _provider(request, ctx)).create_segment(name)
    return JSONResponse({"id": segment.id, "name": segment.name})


routes = [
    Route("/api/widget/provider", put_provider, methods=["PUT"]),
    Route("/api/widget/provider", delete_provider, methods=["DELETE"]),
    Route("/api/widget/provider/lists", get_lists, methods=["GET"]),
    Route("/api/widget/provider/segments", get_segments, methods=["GET"]),
    Route("/api/widget/provider/segments", post_segment, methods=["POST"]),
]

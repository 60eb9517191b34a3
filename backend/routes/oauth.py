"""Kommo installation: the OAuth redirect (`/oauth/kommo/callback`) and the access-revoked hook
(`/oauth/kommo/disconnect`), docs/ARCHITECTURE.md §3."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend.errors import BadRequest, Conflict, Forbidden, UpstreamError
from backend.kommo import install, oauth
from backend.kommo.types import as_int
from backend.security import constant_time_equals
from backend.templating import TEMPLATES
from backend.throttle import Throttled, caller, guards

log = logging.getLogger("mailsync.routes.oauth")


async def callback(request: Request) -> Response:
    resources = request.app.state.resources
    params = request.query_params
    if params.get("error"):
        return _page(request, "install_declined.html", {"error": params["error"]})
    # Everything is checked before the one request that leaves the server (the code exchange).
    host = oauth.validate_referer(params.get("referer"))
    client_id = params.get("client_id")
    if client_id and not constant_time_equals(client_id, resources.settings.client_id):
        raise BadRequest("this authorization is for another integration", code="unknown_client")
    if params.get("state"):
        oauth.verify_state(resources, params["state"])
    code = params.get("code")
    if not code:
        raise BadRequest("the authorization code is missing", code="missing_code")
    if code in guards(request).codes:
        reason = "This authorization code has already been used."
        return _page(request, "install_failed.html", {"reason": reason, "host": host}, 400)
    _throttle_exchange(request, code)
    try:
        installed = await install.install(resources, host, code)
    except UpstreamError as exc:
        if not oauth.is_grant_refusal(exc):
            guards(request).codes.discard(code)  # Kommo never saw it: a reload may try again
        return _failed(request, host, exc)
    return _page(request, "install_success.html", {"installed": installed})


def _throttle_exchange(request: Request, code: str) -> None:
    """Per caller, then for the process (docs/SECURITY.md): a flood of callbacks costs Kommo a
    handful of token requests, not one each. Only an exchange that goes ahead is counted."""
    limits = guards(request)
    who = caller(request)
    waited = limits.exchanges.wait(who)
    if waited > 0:
        raise Throttled("too many authorizations from this address; try again in a minute",
                        retry_after=waited)
    limits.token_request()
    limits.exchanges.add(who)
    limits.codes.add(code)


async def disconnect(request: Request) -> JSONResponse:
    resources = request.app.state.resources
    params = request.query_params
    raw_account_id = params.get("account_id", "")
    if not oauth.disconnect_signature_ok(resources.settings, client_uuid=params.get("client_uuid", ""),
                                         account_id=raw_account_id,
                                         signature=params.get("signature", "")):
        raise Forbidden("the disconnect signature is not valid", code="bad_signature")
    account_id = as_int(raw_account_id)
    if account_id is None:
        raise BadRequest("account_id must be a number", code="invalid_account_id")
    # A replayed hook found our tokens good a moment ago: do not ask Kommo again for a while.
    remembered = guards(request).still_authorized
    if str(account_id) in remembered:
        raise install.still_authorized()
    try:
        disconnected = await install.disconnect(resources, account_id,
                                                before_asking=guards(request).token_request)
    except Conflict:
        remembered.add(str(account_id))
        raise
    return JSONResponse({"account_id": account_id, "disconnected": disconnected})


def _failed(request: Request, host: str, exc: UpstreamError) -> Response:
    if oauth.is_grant_refusal(exc):
        reason, status = oauth.explain(exc), 400
    elif exc.code == "oauth_misconfigured":
        log.error("Kommo refused our integration keys: %s", exc.message)
        reason, status = "mailsync's Kommo integration is misconfigured; the operator has been told.", 502
    else:
        log.warning("install failed: %s (%s)", exc.code, exc.message)
        reason, status = "Kommo could not be reached to finish the installation.", exc.status_code
    return _page(request, "install_failed.html", {"reason": reason, "host": host}, status)


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


routes = [
    Route("/oauth/kommo/callback", callback, methods=["GET"]),
    Route("/oauth/kommo/disconnect", disconnect, methods=["GET"]),
]

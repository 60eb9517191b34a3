"""Kommo OAuth 2.0: referer check, code exchange and refresh (Authlib over our httpx2 client),
the disconnect signature, and Kommo's token-endpoint refusals in plain words."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client

from backend import http
from backend.errors import (
    BadRequest,
    ConfigurationError,
    UpstreamError,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from backend.repository import KommoTokens
from backend.security import constant_time_equals, hmac_sha256_hex
from backend.settings import Secret, Settings, is_local_base_url

if TYPE_CHECKING:
    from backend.resources import Resources

SERVICE = "kommo"
STATE_PURPOSE = "kommo-install"
STATE_MAX_AGE = 3600
# An account host: DNS labels under one of Kommo's three domains; nothing else (no scheme, port,
# path, userinfo, IP), so the code and our client secret can never go anywhere but to Kommo.
_ACCOUNT_HOST = re.compile(
    r"(?P<first>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"(?:kommo\.com|amocrm\.com|amocrm\.ru)")
# Kommo's shared web host, not an account (its docs: never send account calls to www).
_NOT_ACCOUNTS = frozenset({"www"})
# 400 hints that mean our integration keys or redirect URI are wrong, not that the grant is dead.
_OUR_CONFIGURATION = ("client_id", "client_secret", "redirect uri")
_HINTS_IN_PLAIN_WORDS = {
    "authorization code has expired":
        "The authorization code has expired (Kommo codes are valid for 20 minutes).",
    "authorization code has been revoked":
        "This authorization code has already been used.",
    "cannot decrypt the authorization code":
        "Kommo could not read the authorization code; it may have been cut short.",
    "invalid refresh token": "Kommo no longer accepts mailsync's authorization for this account.",
    "invalid account": "Kommo did not recognise the account this code was issued for.",
}


def validate_referer(referer: str | None) -> str:
    """The account host from the redirect's `referer`, or 400 `invalid_referer`."""
    host = (referer or "").strip().lower()
    match = _ACCOUNT_HOST.fullmatch(host) if len(host) <= 253 else None
    if match is None or match["first"] in _NOT_ACCOUNTS:
        raise BadRequest("referer must be a Kommo account host such as acme.kommo.com",
                         code="invalid_referer")
    return host


def api_base_url(settings: Settings, host: str) -> str:
    return settings.kommo_api_base_url or f"https://{host}"


def sign_state(resources: Resources, value: object) -> str:
    """A `state` for the install button; the callback verifies it when present."""
    return resources.signer.sign(STATE_PURPOSE, value)


def verify_state(resources: Resources, state: str) -> object:
    return resources.signer.unsign(STATE_PURPOSE, state, max_age=STATE_MAX_AGE)


def disconnect_signature_ok(settings: Settings, *, client_uuid: str, account_id: str,
                            signature: str) -> bool:
    """Kommo's documented signature: hex HMAC-SHA256 of "{client_id}|{account_id}" keyed with the secret."""
    expected = hmac_sha256_hex(settings.client_secret.reveal(), f"{settings.client_id}|{account_id}")
    # Both comparisons always run, so the answer's timing says nothing about which one failed.
    same_client = constant_time_equals(client_uuid, settings.client_id)
    same_signature = constant_time_equals(signature.lower(), expected)
    return same_client and same_signature


def explain(exc: UpstreamError) -> str:
    """Kommo's refusal (its `hint`) as a sentence for the admin."""
    return _HINTS_IN_PLAIN_WORDS.get(exc.message.strip().lower(), f"Kommo said: {exc.message}")


def is_grant_refusal(exc: UpstreamError) -> bool:
    """True when Kommo refused the grant itself (reinstall needed), not our configuration."""
    return isinstance(exc, UpstreamUnauthorized) and exc.code == "token_refused"


async def exchange_code(resources: Resources, host: str, code: str) -> KommoTokens:
    async with _oauth_client(resources) as client:
        return await _request_tokens(client.fetch_token(
            _token_url(resources.settings, host), grant_type="authorization_code", code=code))


async def refresh_tokens(resources: Resources, host: str, refresh_token: Secret) -> KommoTokens:
    async with _oauth_client(resources) as client:
        # Kommo wants redirect_uri on refreshes too (per Kommo's API documentation).
        return await _request_tokens(client.refresh_token(
            _token_url(resources.settings, host), refresh_token=refresh_token.reveal(),
            redirect_uri=resources.settings.kommo_redirect_uri))


def _token_url(settings: Settings, host: str) -> str:
    # The one request that carries our client secret. In sandbox mode that secret is public and
    # only the simulated Kommo may receive it (settings refuse a non-local base at start-up).
    base = settings.kommo_api_base_url
    if settings.sandbox_mode and not (base and is_local_base_url(base, settings.public_url)):
        raise ConfigurationError(
            "sandbox mode (no KOMMO_CLIENT_ID/KOMMO_CLIENT_SECRET) talks to the simulated Kommo "
            "only: set KOMMO_API_BASE_URL to it, or set both Kommo keys", code="sandbox_only")
    return f"{api_base_url(settings, host)}/oauth2/access_token"


def _oauth_client(resources: Resources) -> AsyncOAuth2Client:
    settings = resources.settings
    client = AsyncOAuth2Client(
        client_id=settings.client_id, client_secret=settings.client_secret.reveal(),
        # Kommo reads the keys from the body, not from HTTP Basic.
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name, not a secret)
        redirect_uri=settings.kommo_redirect_uri, headers={"User-Agent": http.USER_AGENT},
        transport=_SharedClientTransport(resources.http))
    for hook in ("access_token_response", "refresh_token_response"):
        client.register_compliance_hook(hook, _raise_for_refusal)
    return client


async def _request_tokens(pending: Any) -> KommoTokens:
    # Absolute expiry from our clock, taken before the call: never later than Kommo's own.
    requested_at = datetime.now(UTC)
    token = await pending
    access, refresh = token.get("access_token"), token.get("refresh_token")
    try:
        expires_in = int(token.get("expires_in"))
    except (TypeError, ValueError):
        expires_in = 0
    if not isinstance(access, str) or not isinstance(refresh, str) or expires_in <= 0:
        raise UpstreamUnavailable("Kommo's token answer lacks a token pair", service=SERVICE)
    return KommoTokens(access_token=Secret(access), refresh_token=Secret(refresh),
                       expires_at=requested_at + timedelta(seconds=expires_in))


def _raise_for_refusal(response: httpx2.Response) -> httpx2.Response:
    """Authlib only recognises RFC 6749 `error` bodies; Kommo answers problem+json with a
    `hint`, so every non-2xx answer becomes our exception here."""
    if response.is_success:
        return response
    hint = _hint(response)
    if response.status_code in (400, 401):
        if any(word in hint.lower() for word in _OUR_CONFIGURATION):
            raise UpstreamError(hint, code="oauth_misconfigured", service=SERVICE,
                                status=response.status_code)
        raise UpstreamUnauthorized(hint, code="token_refused", service=SERVICE,
                                   status=response.status_code)
    raise http.error_for(response, service=SERVICE, message=f"Kommo token endpoint: {hint}")


def _hint(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("hint", "error_description", "error", "detail", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return f"HTTP {response.status_code}"


class _SharedClientTransport(httpx2.AsyncBaseTransport):
    """Authlib's client is its own httpx2 client; this sends its requests through the process's
    shared client instead, so timeouts, call metrics and test transports apply to them too."""

    _HOP_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await http.send(self._client, request.method, str(request.url), service=SERVICE,
                                   headers=request.headers, content=await request.aread())
        # The body is already decoded: drop the headers that describe its wire form.
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in self._HOP_HEADERS]
        return httpx2.Response(response.status_code, headers=headers, content=response.content)

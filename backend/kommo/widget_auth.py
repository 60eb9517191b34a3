"""The widget's `X-Auth-Token`: an HS256 JWT that Kommo signs with our client secret.

`verify_widget_token` is pure (injectable clock); `widget_endpoint` wraps a route so it receives
the verified identity and the account it names, and refuses writes by non-admins.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.requests import Request
from starlette.responses import Response

from backend import logs, repository
from backend.errors import Forbidden, NotFound, Unauthorized
from backend.models import Account

LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class WidgetIdentity:
    account_id: int
    user_id: int
    subdomain: str | None
    is_admin: bool


@dataclass(frozen=True)
class WidgetContext:
    identity: WidgetIdentity
    account: Account

    @property
    def account_id(self) -> int:
        return self.account.id


def verify_widget_token(
    token: str, *, secret: str, audience: str, now: Callable[[], int] | None = None
) -> WidgetIdentity:
    """Signature (HS256 only), `aud`, `exp`/`nbf` (30 s leeway), required `account_id`/`user_id`."""
    try:
        decoded = jwt.decode(token, OctKey.import_key(secret), algorithms=["HS256"])
        registry = jwt.JWTClaimsRegistry(
            now=now or (lambda: int(time.time())), leeway=LEEWAY_SECONDS,
            aud={"essential": True, "value": audience}, exp={"essential": True},
            account_id={"essential": True}, user_id={"essential": True})
        registry.validate(decoded.claims)
        claims = decoded.claims
        return WidgetIdentity(account_id=_int_claim(claims["account_id"]),
                              user_id=_int_claim(claims["user_id"]),
                              subdomain=claims.get("subdomain"),
                              is_admin=claims.get("is_admin") is True)
    except (JoseError, ValueError, TypeError) as exc:
        raise Unauthorized(f"X-Auth-Token is not valid: {_reason(exc)}") from None


def _int_claim(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("account_id and user_id must be numbers")
    return int(value)


def _reason(exc: Exception) -> str:
    return getattr(exc, "description", None) or str(exc) or type(exc).__name__


def authenticate(request: Request, *, write: bool) -> WidgetIdentity:
    token = request.headers.get("x-auth-token")
    if not token:
        raise Unauthorized("the X-Auth-Token header is missing")
    settings = request.app.state.resources.settings
    identity = verify_widget_token(token, secret=settings.client_secret.reveal(),
                                   audience=settings.public_origin)
    logs.bind_account(identity.account_id)
    if write and not identity.is_admin:
        raise Forbidden("only account administrators can change mailsync settings",
                        code="admin_required")
    return identity


WidgetHandler = Callable[[Request, WidgetContext], Awaitable[Response]]


def widget_endpoint(*, write: bool = False) -> Callable[[WidgetHandler], Callable]:
    """Route decorator: verify the token, load the account it names (404 when not installed)."""

    def decorate(handler: WidgetHandler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            identity = authenticate(request, write=write)
            async with request.app.state.resources.reads() as session:
                account = await repository.get_account(session, identity.account_id)
            if account is None:
                raise NotFound("this Kommo account has not installed mailsync",
                               code="account_not_found")
            return await handler(request, WidgetContext(identity=identity, account=account))

        return endpoint

    return decorate

"""Registry of email providers: register/get/registered, plus building one from a stored
connection or from a key the admin just typed, and parsing a webhook delivery for a connection."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backend.errors import Unprocessable
from backend.providers import cache
from backend.providers.base import EmailProvider, EspEvent

if TYPE_CHECKING:
    from backend.app import Services
    from backend.models import EspConnection

_REGISTRY: dict[str, type[Any]] = {}
_CLASSIC_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
_JWT_KEY = re.compile(r"^eyJ[\w-]*\.[\w-]+\.[\w-]+$")


def register(cls: type[Any]) -> type[Any]:
    _REGISTRY[cls.kind] = cls
    return cls


def get(kind: str) -> type[Any]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise Unprocessable(f"unknown email provider {kind!r}", code="invalid_provider") from None


def registered() -> list[str]:
    return sorted(_REGISTRY)


def provider_class(kind: str, *, classic: bool = False) -> type[Any]:
    """The class whose `parse_webhook` reads this connection's deliveries."""
    return MailerLiteClassicProvider if kind == "mailerlite" and classic else get(kind)


def looks_classic(api_key: str) -> bool | None:
    """True for a 32-hex Classic key, False for a JWT-shaped new key, None when unsure."""
    if _CLASSIC_KEY.match(api_key):
        return True
    return False if _JWT_KEY.match(api_key) else None


def from_key(services: Services, kind: str, api_key: str, *, classic: bool = False,
             list_id: str | None = None) -> EmailProvider:
    settings = services.settings
    if kind == "mailchimp":
        return get(kind)(services.http, base_url=settings.mailchimp_api_base_url, api_key=api_key,
                         list_id=list_id, limiter=services.limiter)
    if kind == "mailerlite" and classic:
        return MailerLiteClassicProvider(services.http, api_key=api_key,
                                         base_url=settings.mailerlite_classic_api_base_url,
                                         limiter=services.limiter)
    return get(kind)(services.http, base_url=settings.mailerlite_api_base_url, api_key=api_key,
                     limiter=services.limiter)


def build(connection: EspConnection, services: Services) -> EmailProvider:
    """The provider for a stored connection (decrypts its key)."""
    return from_key(services, connection.kind, services.vault.decrypt(connection.api_key_enc),
                    classic=connection.classic, list_id=connection.list_id)


def parse_delivery(connection: EspConnection, services: Services, *, body: bytes,
                   headers: Mapping[str, str]) -> list[EspEvent]:
    """Verify and parse one webhook delivery addressed to `connection` (pure apart from
    decrypting the stored secret). Raises BadRequest/Unauthorized/MalformedBody."""
    if connection.kind == "mailchimp":
        return MailchimpProvider.parse_webhook(body)
    if connection.classic:
        signature = headers.get("X-MailerLite-Signature") or headers.get("Signature")
        secret = services.vault.decrypt(connection.api_key_enc)
        return MailerLiteClassicProvider.parse_webhook(body, signature=signature, secret=secret)
    secret = services.vault.decrypt(connection.webhook_secret_enc or "") \
        if connection.webhook_secret_enc else ""
    return MailerLiteProvider.parse_webhook(body, signature=headers.get("Signature"), secret=secret)


def clear_caches() -> None:
    """Tests: forget per-process field caches, budgets and semaphores."""
    from backend.providers.mailchimp import api as mailchimp_api
    from backend.providers.mailerlite import api as mailerlite_api

    cache.clear()
    mailerlite_api.clear_state()
    mailchimp_api.clear_state()


from backend.providers.mailchimp.client import MailchimpProvider  # noqa: E402
from backend.providers.mailerlite.classic import MailerLiteClassicProvider  # noqa: E402
from backend.providers.mailerlite.client import MailerLiteProvider  # noqa: E402

register(MailerLiteProvider)
register(MailchimpProvider)

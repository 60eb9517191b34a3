"""An account's connection to its email platform: connect (check the key live, choose the
audience, register our webhook), disconnect, and the provider a stored connection stands for.

Routes and the sync engine come here; only `providers/` knows the platforms. The connection row
(with its new hook key) is committed *before* our webhook is registered, because a platform may
GET the URL and accept it only when we answer; if registration then fails the row is removed
again, so nothing stays stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backend import jobs, repository
from backend.errors import NotFound, Unprocessable, UpstreamError
from backend.models import EspConnection
from backend.providers import registry
from backend.providers.base import EmailProvider
from backend.security import new_hook_key

if TYPE_CHECKING:
    from backend.resources import Resources

log = logging.getLogger("mailsync.connections")


def families() -> list[str]:
    """What an admin can choose ("mailerlite", "mailchimp"); one family may hold several APIs."""
    return sorted({cls.family for cls in registry.all()})


def provider_for(connection: EspConnection, resources: Resources) -> EmailProvider:
    """The provider for a stored connection (decrypts its key)."""
    return registry.get(connection.kind).from_key(
        resources, resources.vault.decrypt(connection.api_key_enc), list_id=connection.list_id)


def family_of(connection: EspConnection) -> str:
    return registry.get(connection.kind).family


async def connected_provider(resources: Resources, account_id: int) -> EmailProvider:
    async with resources.sessions() as session:
        connection = await repository.get_esp_connection(session, account_id)
    if connection is None or not connection.api_key_enc:  # an erased key is no connection
        raise NotFound("connect MailerLite or Mailchimp first", code="provider_not_connected")
    return provider_for(connection, resources)


async def connect(resources: Resources, account_id: int, *, family: str, api_key: str | None,
                  list_id: str | None) -> None:
    """Check the key live, then store the connection and register our webhook. An empty
    `api_key` reuses the stored one of the same family (choosing an audience afterwards)."""
    if family not in families():
        raise Unprocessable(f"kind must be one of {', '.join(families())}", code="invalid_provider")
    async with resources.sessions() as session:
        old = await repository.get_esp_connection(session, account_id)
    if not api_key and old is not None and old.api_key_enc and family_of(old) == family:
        api_key = resources.vault.decrypt(old.api_key_enc)
    if not api_key:
        raise Unprocessable("an API key is required", code="invalid_api_key")
    provider, label = await _validated(resources, family, api_key)
    list_id, list_name = await _pick_list(provider, list_id)
    if list_id is not None:
        provider = type(provider).from_key(resources, api_key, list_id=list_id)
        label = f"{provider.display_name} ({list_name})"
    if old is not None:
        await _drop_webhook(resources, old)
    connection = EspConnection(
        account_id=account_id, kind=provider.kind, api_key_enc=resources.vault.encrypt(api_key),
        label=label, list_id=list_id, list_name=list_name, hook_key=new_hook_key(),
        **provider.connection_fields())
    await _store(resources, account_id, connection)
    if not provider.uses_lists or list_id is not None:
        await _register(resources, provider, connection)


async def disconnect(resources: Resources, account_id: int) -> None:
    """Remove our webhook at the platform (best effort) and the stored connection."""
    async with resources.sessions() as session:
        connection = await repository.get_esp_connection(session, account_id)
    if connection is None:
        return
    await _drop_webhook(resources, connection)
    async with resources.sessions() as session:
        await repository.delete_esp_connection(session, account_id)
        await session.commit()


async def _validated(resources: Resources, family: str, api_key: str) -> tuple[EmailProvider, str]:
    """Try the family's APIs, the one whose key shape matches first; the first that accepts the
    key wins. Returns the provider and the label to show."""
    candidates = sorted((cls for cls in registry.all() if cls.family == family),
                        key=lambda cls: {True: 0, None: 1, False: 2}[cls.recognises_key(api_key)])
    refusal: Unprocessable | None = None
    for cls in candidates:
        provider = cls.from_key(resources, api_key)
        try:
            return provider, await provider.validate()
        except Unprocessable as exc:
            refusal = exc
    raise refusal or Unprocessable("this API key was not accepted", code="invalid_api_key")


async def _pick_list(provider: EmailProvider, list_id: str | None) -> tuple[str | None, str | None]:
    """(list_id, list_name): a given list must exist; with none given, the only audience."""
    if not provider.uses_lists:
        return None, None
    audiences = await provider.list_lists()
    if list_id is not None:
        match = next((a for a in audiences if a.id == list_id), None)
        if match is None:
            raise Unprocessable(f"this {provider.display_name} account has no such audience",
                                code="invalid_list")
        return match.id, match.name
    if len(audiences) == 1:
        return audiences[0].id, audiences[0].name
    return None, None


async def _store(resources: Resources, account_id: int, connection: EspConnection) -> None:
    async with resources.sessions() as session:
        await repository.delete_esp_connection(session, account_id)
        await session.flush()
        await repository.save_esp_connection(session, connection)
        await jobs.run_now(session, account_id)  # work that waited for a working key goes now
        await session.commit()


async def _register(resources: Resources, provider: EmailProvider, connection: EspConnection) -> None:
    url = f"{resources.settings.public_url}/webhooks/{provider.family}/{connection.hook_key}"
    try:
        webhook = await provider.register_webhook(url)
    except Exception:
        async with resources.sessions() as session:
            await repository.delete_esp_connection(session, connection.account_id)
            await session.commit()
        raise
    async with resources.sessions() as session:
        row = await repository.get_esp_connection(session, connection.account_id)
        if row is None:  # disconnected meanwhile
            return
        row.webhook_id = webhook.id
        row.webhook_secret_enc = resources.vault.encrypt(webhook.secret) if webhook.secret else None
        await repository.save_esp_connection(session, row)
        await session.commit()


async def _drop_webhook(resources: Resources, connection: EspConnection) -> None:
    """Best effort: a revoked key or an unreachable platform must not keep the admin connected; a
    webhook left behind posts to a hook key we no longer know (404)."""
    if not connection.webhook_id or not connection.api_key_enc:
        return
    try:
        await provider_for(connection, resources).delete_webhook(connection.webhook_id)
    except UpstreamError as exc:
        log.warning("could not remove the %s webhook: %s", connection.kind, exc.message)

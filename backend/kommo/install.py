"""Installing (OAuth callback) and disconnecting a Kommo account.

An install costs 4 outbound calls: the code exchange, `GET /api/v4/account`, the webhook list and
the webhook subscription. A reinstall finds its webhook in the list and costs 3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend import repository
from backend.errors import UpstreamError
from backend.kommo import oauth
from backend.kommo.client import KommoClient
from backend.kommo.webhooks import WEBHOOK_SETTINGS
from backend.models import AccountStatus

if TYPE_CHECKING:
    from backend.resources import Resources
    from backend.settings import Settings

log = logging.getLogger("mailsync.kommo.install")


@dataclass(frozen=True)
class Installed:
    account_id: int
    host: str
    subdomain: str
    name: str
    reinstall: bool
    webhook_registered: bool


def webhook_destination(settings: Settings, hook_key: str) -> str:
    return f"{settings.public_url}/webhooks/kommo/{hook_key}"


async def install(resources: Resources, host: str, code: str) -> Installed:
    """Exchange the code, learn the account, store it with its tokens, subscribe our webhook.
    A reinstall keeps the hook key, mapping, options and ESP connection."""
    tokens = await oauth.exchange_code(resources, host, code)
    info = await KommoClient.with_token(resources, host, tokens.access_token).account()
    async with resources.sessions() as session, session.begin():
        reinstall = await repository.get_account(session, info.id) is not None
        account = await repository.upsert_account(session, info.id, host=host,
                                                  subdomain=info.subdomain, name=info.name)
        await repository.save_kommo_tokens(session, resources.vault, info.id, tokens)
        hook_key = account.hook_key
    registered = await ensure_webhook(resources, info.id, host, hook_key)
    log.info("Kommo account installed", extra={"kommo_account": info.id, "reinstall": reinstall})
    return Installed(account_id=info.id, host=host, subdomain=info.subdomain, name=info.name,
                     reinstall=reinstall, webhook_registered=registered)


async def ensure_webhook(resources: Resources, account_id: int, host: str, hook_key: str) -> bool:
    """Subscribe our webhook unless an enabled one with every setting we need is already there
    (Kommo has no idempotency key, and a second subscription would double every delivery)."""
    destination = webhook_destination(resources.settings, hook_key)
    client = KommoClient(resources, account_id, host=host)
    try:
        existing = await client.webhooks(destination)
        if not any(set(WEBHOOK_SETTINGS) <= set(hook.settings) and not hook.disabled
                   for hook in existing):
            await client.add_webhook(destination, WEBHOOK_SETTINGS)
        registered = True
    except UpstreamError as exc:
        # The account stays installed (the admin can still configure it), but nothing will sync
        # until this works: API webhooks need Kommo's Advanced plan or better.
        log.warning("could not subscribe the Kommo webhook: %s (%s)", exc.code, exc.message)
        registered = False
    async with resources.sessions() as session, session.begin():
        await repository.set_kommo_webhook_registered(session, account_id, registered)
    return registered


async def disconnect(resources: Resources, account_id: int) -> bool:
    """Kommo revoked our access: erase the account's tokens and ESP key, stop its jobs. The
    mapping stays for a reinstall. False when the account was never installed."""
    async with resources.sessions() as session, session.begin():
        if await repository.get_account(session, account_id) is None:
            return False
        await repository.set_account_status(session, account_id, AccountStatus.DISCONNECTED)
        await repository.set_kommo_webhook_registered(session, account_id, False)
        await repository.erase_account_secrets(session, account_id)
        cancelled = await repository.cancel_account_jobs(session, account_id,
                                                         "the account disconnected mailsync in Kommo")
    log.info("Kommo account disconnected", extra={"kommo_account": account_id, "cancelled_jobs": cancelled})
    return True

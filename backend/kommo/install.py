"""Installing (OAuth callback) and disconnecting a Kommo account.

An install costs 4 outbound calls: the code exchange, `GET /api/v4/account`, the webhook list and
the webhook subscription. A reinstall finds its webhook in the list and costs 3. A disconnect of
an active account costs 1: the refresh that confirms Kommo really revoked us.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend import repository
from backend.errors import Conflict, UpstreamError, UpstreamUnauthorized, UpstreamUnavailable
from backend.kommo import oauth, tokens
from backend.kommo.client import KommoClient
from backend.kommo.webhooks import WEBHOOK_SETTINGS
from backend.models import AccountStatus

if TYPE_CHECKING:
    from backend.resources import Resources
    from backend.settings import Secret, Settings

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


async def disconnect(resources: Resources, account_id: int, *,
                     before_asking: Callable[[], None] = lambda: None) -> bool:
    """Kommo says it revoked our access: erase the account's tokens and ESP key, stop its jobs.
    The mapping stays for a reinstall. False when the account was never installed.

    The hook's signature covers only the account id, so anyone who saw one can replay it: before
    erasing, Kommo must refuse our refresh token (one refresh; `before_asking` may refuse to
    send it). If Kommo still accepts it, nothing is erased: 409 `still_authorized`."""
    async with resources.reads() as session:
        account = await repository.get_account(session, account_id)
        current = await repository.get_kommo_tokens(session, resources.vault, account_id)
    if account is None:
        return False
    # Without tokens, or already refused by Kommo (needs_reauth), there is nothing to ask.
    if current is not None and account.status == AccountStatus.ACTIVE:
        before_asking()
        if await _still_accepted(resources, account_id, current.access_token):
            log.warning("disconnect refused: Kommo still accepts our authorization (replayed or "
                        "forged hook)", extra={"kommo_account": account_id})
            raise still_authorized()
    await _erase(resources, account_id)
    return True


def still_authorized() -> Conflict:
    return Conflict("Kommo still accepts mailsync's authorization for this account, so this "
                    "disconnect did not come from Kommo; nothing was erased", code="still_authorized")


async def _still_accepted(resources: Resources, account_id: int, access_token: Secret) -> bool:
    try:
        await tokens.refresh(resources, account_id, rejected=access_token)
    except UpstreamUnauthorized:
        return False  # refused: the revocation is real
    except UpstreamError as exc:
        raise UpstreamUnavailable(
            f"Kommo could not confirm the disconnect ({exc.code}); nothing was erased",
            code="disconnect_unconfirmed", service="kommo") from exc
    return True


async def _erase(resources: Resources, account_id: int) -> None:
    async with resources.sessions() as session, session.begin():
        await repository.set_account_status(session, account_id, AccountStatus.DISCONNECTED)
        await repository.set_kommo_webhook_registered(session, account_id, False)
        await repository.erase_account_secrets(session, account_id)
        cancelled = await repository.cancel_account_jobs(session, account_id,
                                                         "the account disconnected mailsync in Kommo")
    log.info("Kommo account disconnected", extra={"kommo_account": account_id, "cancelled_jobs": cancelled})

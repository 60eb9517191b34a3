"""The catch-up sweep's first step: is our Kommo webhook still there and enabled? Kommo removes or
disables webhooks (more than 100 bad answers in 2 hours), and then sends nothing. A missing one is
subscribed again the way the install does it (`install.ensure_webhook`) and the admin is told in
the activity log, in plain words; one Kommo refuses is asked for again every hour.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from backend import activity_log
from backend.errors import UpstreamError, UpstreamUnauthorized
from backend.kommo import install
from backend.kommo.client import KommoClient
from backend.kommo.webhooks import WEBHOOK_SETTINGS
from backend.models import Account, Activity, KommoCatchup, utcnow

if TYPE_CHECKING:
    from backend.resources import Resources

log = logging.getLogger("mailsync.sync.catchup")

RESUBSCRIBE_EVERY = timedelta(hours=1)  # while Kommo refuses our webhook, ask again this often


async def check(resources: Resources, client: KommoClient, account: Account, row: KommoCatchup,
                now: datetime, *, sweep_seconds: int) -> str:
    """present | resubscribed | missing | unchecked. Kommo refusing the check (a plan without API
    webhooks: 402/403) must not stop the sweep, which is then the only way changes arrive."""
    try:
        return await _check(resources, client, account, row, now, sweep_seconds)
    except UpstreamUnauthorized:
        raise
    except UpstreamError as exc:
        log.warning("could not check the Kommo webhook: %s (%s)", exc.code, exc.message)
        return "unchecked"


async def _check(resources: Resources, client: KommoClient, account: Account, row: KommoCatchup,
                 now: datetime, sweep_seconds: int) -> str:
    """One call while the webhook is in place."""
    destination = install.webhook_destination(resources.settings, account.hook_key)
    if any(set(WEBHOOK_SETTINGS) <= set(hook.settings) and not hook.disabled
           for hook in await client.webhooks(destination)):
        row.webhook_missing_since = None
        return "present"
    failed_before = row.webhook_missing_since
    if failed_before is not None and now - failed_before < RESUBSCRIBE_EVERY:
        return "missing"
    if await install.ensure_webhook(resources, account.id, account.host, account.hook_key):
        row.webhook_missing_since = None
        await _tell_admin(resources, account.id, resubscribed=True, sweep_seconds=sweep_seconds)
        return "resubscribed"
    row.webhook_missing_since = now
    if failed_before is None:
        await _tell_admin(resources, account.id, resubscribed=False, sweep_seconds=sweep_seconds)
    return "missing"


async def _tell_admin(resources: Resources, account_id: int, *, resubscribed: bool,
                      sweep_seconds: int) -> None:
    minutes = max(1, round(sweep_seconds / 60))
    if resubscribed:
        entry = Activity(account_id=account_id, at=utcnow(), direction="to_kommo", outcome="ok",
                         summary="Kommo had stopped sending changes to mailsync (its webhook was "
                                 "removed or switched off); mailsync subscribed it again",
                         detail="Changes made meanwhile were read from Kommo's event log, so none "
                                "were lost.")
    else:
        entry = Activity(account_id=account_id, at=utcnow(), direction="to_kommo", outcome="failed",
                         summary="Kommo is not sending changes to mailsync: its webhook is missing "
                                 "and Kommo refused to subscribe it again",
                         detail=f"mailsync reads Kommo's event log every {minutes} minutes instead, "
                                "so changes still arrive, only later. Kommo's API webhooks need the "
                                "Advanced plan or better; mailsync asks again every hour.")
    async with resources.sessions() as session, session.begin():
        await activity_log.add_activity(session, account_id, entry)

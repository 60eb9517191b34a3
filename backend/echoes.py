"""Our own unsubscribes, expected back as webhooks.

MailerLite tells its webhooks about every unsubscribe, including the ones our API calls make when a
stage rule unsubscribes someone. Such an echo must not come back to Kommo as "the person
unsubscribed" (nor loop). Before we unsubscribe an address we leave a receipt; the first
unsubscribe event for that address within the hour takes it. Mailchimp needs none: its webhooks
are registered without API-made changes.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.models import NoteReceipt, utcnow

WINDOW = timedelta(hours=1)


def _key(email: str) -> str:
    # Hashed: a receipt names no address in plaintext.
    return "echo:unsubscribed:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def expect_unsubscribe(session: AsyncSession, account_id: int, email: str) -> None:
    """Before the call: if the worker dies after it, the echo is still recognised."""
    key = _key(email)
    await session.exec(sa.delete(NoteReceipt).where(NoteReceipt.account_id == account_id,
                                                    NoteReceipt.dedupe_key == key))
    session.add(NoteReceipt(account_id=account_id, dedupe_key=key))
    await session.flush()


async def take_unsubscribe(session: AsyncSession, account_id: int, email: str) -> bool:
    """True once for the first unsubscribe of `email` after our own, within the hour."""
    result = await session.exec(sa.delete(NoteReceipt).where(
        NoteReceipt.account_id == account_id, NoteReceipt.dedupe_key == _key(email),
        NoteReceipt.created_at >= utcnow() - WINDOW))
    return bool(result.rowcount)

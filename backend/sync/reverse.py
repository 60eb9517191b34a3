"""ESP → Kommo: an unsubscribe, bounce, spam complaint, cleaned or changed address becomes one
`service_message` note on each lead of the contact and the tag `email-opt-out` on the contact,
so nobody calls or mails a person who opted out (docs/ARCHITECTURE.md §7).

The same event delivered again adds nothing: the inbox drops repeats, and a receipt written
after the notes stops a retried job from adding them twice.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from backend import contact_states, echoes, repository
from backend.kommo import types
from backend.models import ContactState
from backend.providers.base import EspEvent, EspStatus, EventKind
from backend.sync.account import AccountSync

if TYPE_CHECKING:
    from backend.resources import Resources

OPT_OUT_TAG = "email-opt-out"
STATUS_AFTER = {
    EventKind.UNSUBSCRIBED: str(EspStatus.UNSUBSCRIBED),
    EventKind.BOUNCED: str(EspStatus.BOUNCED),
    EventKind.SPAM_REPORTED: str(EspStatus.JUNK),
    EventKind.CLEANED: str(EspStatus.CLEANED),
}


async def apply_esp_event(resources: Resources, account_id: int, event: EspEvent) -> None:
    ctx = await AccountSync.load(resources, account_id)
    email = event.email
    if ctx is None or not email:
        return
    key = event.dedupe_key
    async with resources.sessions() as session:
        if await repository.has_note_receipt(session, account_id, key):
            return
        states = list(await contact_states.find_contact_states_by_email(session, account_id, email))
    if await _is_our_echo(ctx, event, key):
        await ctx.record(direction="to_kommo", outcome="skipped", email=email,
                         summary=f"unsubscribed at {ctx.platform} by a mailsync stage rule: no note")
        return
    contacts = await _contacts(ctx, email, states)
    if not contacts:
        await ctx.record(direction="to_kommo", outcome="skipped", email=email,
                         summary=f"{_what(event)} at {ctx.platform}: no Kommo contact has this address")
        await _receipt(ctx, key)
        return
    text = note_text(event, ctx.platform)
    notes = [types.NewNote(entity_id=lead_id, text=text)
             for contact in contacts for lead_id in contact.lead_ids]
    notes = await _not_yet_sent(ctx, key, notes) if notes else notes
    if notes:
        await ctx.kommo.add_notes("leads", notes)
    await _receipt(ctx, key)  # notes are out: a retry from here on must not repeat them
    for contact in contacts:
        await ctx.kommo.add_contact_tag(contact.id, OPT_OUT_TAG, current=contact)
        await _mark(ctx, contact.id, email, event, states)
        await ctx.record(direction="to_kommo", outcome="ok", email=email, contact_id=contact.id,
                         summary=f"{_what(event)} at {ctx.platform}: noted on "
                         f"{len(contact.lead_ids)} lead(s), tagged {OPT_OUT_TAG}")


async def _is_our_echo(ctx: AccountSync, event: EspEvent, key: str) -> bool:
    """Our own unsubscribe, reported back; the receipt goes in the same transaction, so a
    retried job cannot take it for the person's own choice."""
    if event.kind != EventKind.UNSUBSCRIBED or not ctx.provider.echoes_own_unsubscribes:
        return False
    async with ctx.resources.sessions() as session, session.begin():
        if not await echoes.take_unsubscribe(session, ctx.account_id, event.email):
            return False
        await repository.add_note_receipt(session, ctx.account_id, key)
    return True


async def _contacts(ctx: AccountSync, email: str, states: list[ContactState]) -> list[types.Contact]:
    """Through what we synced, else Kommo's search (exact address match)."""
    if states:
        return await ctx.kommo.contacts([s.contact_id for s in states])
    return await ctx.kommo.find_contacts_by_email(email)


async def _not_yet_sent(ctx: AccountSync, key: str, notes: list[types.NewNote]) -> list[types.NewNote]:
    """A job killed between Kommo's answer and its receipt would add the notes twice: a marker
    goes first, and a run that finds it reads the leads' notes back and sends only those missing."""
    marker = "sending:" + hashlib.sha256(key.encode()).hexdigest()
    async with ctx.resources.sessions() as session, session.begin():
        retried = await repository.has_note_receipt(session, ctx.account_id, marker)
        if not retried:
            await repository.add_note_receipt(session, ctx.account_id, marker)
    if not retried:
        return notes
    there = await ctx.kommo.note_texts("leads", sorted({n.entity_id for n in notes}))
    return [n for n in notes if (n.entity_id, n.text) not in there]


async def _receipt(ctx: AccountSync, key: str) -> None:
    async with ctx.resources.sessions() as session, session.begin():
        if not await repository.has_note_receipt(session, ctx.account_id, key):
            await repository.add_note_receipt(session, ctx.account_id, key)


async def _mark(ctx: AccountSync, contact_id: int, email: str, event: EspEvent,
                states: list[ContactState]) -> None:
    state = next((s for s in states if s.contact_id == contact_id), None)
    if state is None:
        state = ContactState(account_id=ctx.account_id, contact_id=contact_id, email=email)
    state.esp_status = STATUS_AFTER.get(event.kind, state.esp_status)
    state.address_changed = state.address_changed or event.kind == EventKind.EMAIL_CHANGED
    await ctx.save(state)


def _what(event: EspEvent) -> str:
    kind = event.kind
    return {
        EventKind.UNSUBSCRIBED: "unsubscribed",
        EventKind.BOUNCED: "bounced",
        EventKind.SPAM_REPORTED: "reported spam",
        EventKind.CLEANED: "address cleaned",
        EventKind.EMAIL_CHANGED: "address changed",
    }.get(kind, str(kind))


def note_text(event: EspEvent, platform: str) -> str:
    """What happened, when and where, in words a salesperson reads at a glance."""
    email = event.email
    when = f" on {event.occurred_at.strftime('%Y-%m-%d %H:%M')} UTC" if event.occurred_at else ""
    kind = event.kind
    reason = f" ({event.reason})" if event.reason else ""
    what = {
        EventKind.UNSUBSCRIBED: f"{email} unsubscribed at {platform}{reason}",
        EventKind.BOUNCED: f"Email to {email} bounced at {platform}{reason}",
        EventKind.SPAM_REPORTED: f"{email} reported an email from {platform} as spam",
        EventKind.CLEANED: f"{platform} removed {email} as undeliverable{reason}",
        EventKind.EMAIL_CHANGED: f"{email} changed their address to {event.new_email} "
                                 f"at {platform}",
    }.get(kind, f"{email}: {kind} at {platform}")
    return f"{what}{when}. Do not email this contact from Kommo; update the contact if needed."


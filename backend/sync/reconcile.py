"""Kommo → ESP, level-triggered (docs/ARCHITECTURE.md §1 rule 2, §7).

A job names a lead or a contact. We read Kommo's current truth, compute what the contact's
address should look like at the ESP, compare with what we last wrote (`ContactState`) and send
only the difference — usually one upsert carrying the segment change. Late, repeated and
out-of-order deliveries therefore all converge on Kommo's final state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from backend import echoes
from backend.errors import PermanentRefusal, UpstreamNotFound
from backend.kommo import types
from backend.models import ContactState, utcnow
from backend.providers.base import OPTED_OUT, Consent, EspStatus, SubscriberData
from backend.sync.account import AccountSync
from backend.sync.desired import ContactPlan, plan_contact, segment_change
from backend.sync.mapping import Rule

if TYPE_CHECKING:
    from backend.resources import Resources

# A contact we synced within this window is trusted as stored for a pure stage change: its own
# edits reach us as contact webhooks (reconcile_contact), so the lead job need not re-read it.
TRUST_STORED_CONTACT = timedelta(hours=24)


async def reconcile_lead(resources: Resources, account_id: int, lead_id: int) -> None:
    ctx = await AccountSync.load(resources, account_id)
    if ctx is None:
        return
    lead = await ctx.kommo.lead(lead_id)
    if lead is None:
        await lead_deleted(ctx, lead_id)
        return
    rule = ctx.mapping.rule_for(lead.pipeline_id, lead.status_id)
    if rule is None:
        await release(ctx, lead_id)  # unmapped stage: nothing changes at the ESP
        return
    if not lead.contacts:
        await ctx.record(outcome="skipped", summary="skipped: the lead has no contact",
                         lead_id=lead.id)
        return
    contact_ids = ([c.id for c in lead.contacts] if ctx.options.all_lead_contacts
                   else [lead.main_contact_id])
    for plan, state in await _plans(ctx, lead, contact_ids):
        await apply(ctx, lead, rule, plan, state)


async def _plans(ctx: AccountSync, lead: types.Lead, contact_ids: list[int]
                 ) -> list[tuple[ContactPlan, ContactState | None]]:
    """One plan per contact; contacts synced recently are not read again (see above)."""
    states = {cid: await ctx.state(cid) for cid in contact_ids}
    stale = [cid for cid, state in states.items() if not trusted(ctx, state)]
    fetched = {c.id: c for c in await ctx.kommo.contacts(stale)} if stale else {}
    companies = await ctx.company_names(fetched.values())
    plans = []
    for cid in contact_ids:
        state = states[cid]
        if cid in fetched:
            plans.append((plan_contact(fetched[cid], lead.id, ctx.options, companies.get(cid)), state))
        elif cid not in stale and state is not None:
            plans.append((stored_plan(state, lead.id), state))
    return plans


def trusted(ctx: AccountSync, state: ContactState | None) -> bool:
    return (state is not None and state.email is not None and state.fields_hash is not None
            and state.last_error is None and ctx.options.consent_field_id is None
            and state.last_synced_at is not None
            and utcnow() - state.last_synced_at < TRUST_STORED_CONTACT)


def stored_plan(state: ContactState, lead_id: int) -> ContactPlan:
    """The contact as we last wrote it; only the deciding lead's id may be new."""
    fields = {} if state.lead_id == lead_id else {"kommo_lead_id": str(lead_id)}
    return ContactPlan(contact_id=state.contact_id, email=state.email, skip_reason=None,
                       consent=Consent.SUBSCRIBED, fields=fields, known_hash=state.fields_hash)


async def apply(ctx: AccountSync, lead: types.Lead, rule: Rule, plan: ContactPlan,
                state: ContactState | None) -> None:
    """Bring one contact's address in line with the rule of the lead's stage."""
    common = {"lead_id": lead.id, "contact_id": plan.contact_id, "email": plan.email}
    why = why_not_written(lead, plan, state)
    if why is not None:
        if why:
            await ctx.record(outcome="skipped", summary=why, **common)
        return
    state = await _follow_email(ctx, plan, state)
    if state.address_changed:
        await ctx.record(outcome="skipped", summary=address_moved(ctx), **common)
        return
    await _send(ctx, lead, rule, plan, state, common)


def why_not_written(lead: types.Lead, plan: ContactPlan, state: ContactState | None) -> str | None:
    """Why nothing is written for this contact, known before its address is looked at: the
    summary to record, "" to stay silent (refused for good and unchanged since), None: go on."""
    if plan.skip_reason:
        return f"skipped: {plan.skip_reason}"
    if decided_elsewhere(lead, state):
        return decided_by(state.lead_id)
    if state is not None and state.last_error and state.fields_hash == plan.fields_hash:
        return ""
    return None


def decided_by(lead_id: int | None) -> str:
    return f"skipped: lead {lead_id} was updated more recently and decides this contact's segment"


def address_moved(ctx: AccountSync) -> str:
    return f"skipped: the address was changed at {ctx.platform}; update the contact's email in Kommo"


def recency(lead: types.Lead) -> tuple[int, int]:
    """Which of a contact's leads decides: the most recently updated; of equals, the newest."""
    return lead.updated_at or 0, lead.id


def decided_elsewhere(lead: types.Lead, state: ContactState | None) -> bool:
    """One address, several leads: the most recently updated lead in a mapped stage decides."""
    return (state is not None and state.lead_id not in (None, lead.id)
            and (state.lead_updated_at or 0, state.lead_id) > recency(lead))


async def _follow_email(ctx: AccountSync, plan: ContactPlan,
                        state: ContactState | None) -> ContactState:
    """The state to diff against. A new address starts from what the ESP holds for it; an old
    address leaves the managed segments."""
    if state is not None and state.email == plan.email and (
            state.esp_status is not None or state.address_changed):
        return state  # else a write to it was cut short: what the ESP holds is read again
    if state is not None and state.email and state.email != plan.email and state.segments:
        await _leave_managed(ctx, state.email, state.segments)
    subscriber = await ctx.provider.get_subscriber(plan.email)
    fresh = state or ContactState(account_id=ctx.account_id, contact_id=plan.contact_id)
    fresh.email = plan.email
    fresh.address_changed = False
    fresh.esp_subscriber_id = subscriber.id if subscriber else None
    fresh.esp_status = str(subscriber.status) if subscriber else None
    fresh.segments = sorted(set(subscriber.segments) & ctx.mapping.managed_segments) if subscriber else []
    fresh.fields_hash = None
    return fresh


async def _send(ctx: AccountSync, lead: types.Lead, rule: Rule, plan: ContactPlan,
                state: ContactState, common: dict) -> None:
    change = segment_change(rule, ctx.mapping.managed_segments, state.segments)
    new_contact = state.last_synced_at is None
    add = list(change.add)
    if new_contact and ctx.options.new_contact_segment_id:
        add.append(ctx.options.new_contact_segment_id)
    same_fields = state.fields_hash == plan.fields_hash and state.lead_id == lead.id
    if change.unsubscribe or add or change.remove or not same_fields:
        await ctx.unverify([state])
    try:
        if change.unsubscribe:
            summary = await _unsubscribe(ctx, plan, state)
        elif add or change.remove or not same_fields:
            await _upsert(ctx, plan, state, add, change.remove, current=same_fields)
            summary = describe(ctx, add, change.remove) or f"details updated at {ctx.platform}"
        else:
            summary = None
    except PermanentRefusal as refusal:
        await refused(ctx, plan, state, refusal, common)
        return
    remember(ctx, state, lead, plan)
    await ctx.save(state)
    if summary:
        summary = f"{summary} ({ctx.stage_text(lead)})"
        await ctx.record(outcome="ok", summary=summary, **common)
        if change.unsubscribe:  # always said: a salesperson must not read it as the person's choice
            await ctx.kommo.add_notes("leads", [types.NewNote(
                entity_id=lead.id, text=f"mailsync unsubscribed {plan.email} at {ctx.platform}: "
                f"a mailsync rule unsubscribes leads in {ctx.stage_text(lead)}. The person did "
                "not unsubscribe themselves.")])
        elif ctx.options.notes_on_sync:
            await ctx.kommo.add_notes("leads", [types.NewNote(
                entity_id=lead.id, text=f"mailsync → {ctx.platform}: {plan.email} {summary}.")])


async def _upsert(ctx: AccountSync, plan: ContactPlan, state: ContactState,
                  add: list[str], remove: tuple[str, ...], *, current: bool = False) -> None:
    """`current`: the ESP holds this address with exactly these fields (a pure segment move)."""
    subscriber = await ctx.provider.upsert(SubscriberData(
        email=plan.email, fields=plan.fields, consent=plan.consent, add_segments=add,
        remove_segments=remove, fields_current=current and state.esp_status is not None))
    state.esp_subscriber_id = subscriber.id or state.esp_subscriber_id
    if subscriber.id is not None or state.esp_status is None:
        state.esp_status = str(subscriber.status)
    state.segments = sorted((set(state.segments) | set(add)) - set(remove))


async def _unsubscribe(ctx: AccountSync, plan: ContactPlan, state: ContactState) -> str | None:
    if state.esp_status and EspStatus.parse(state.esp_status) in OPTED_OUT:
        return None
    if ctx.provider.echoes_own_unsubscribes:
        async with ctx.resources.sessions() as session, session.begin():
            await echoes.expect_unsubscribe(session, ctx.account_id, plan.email)
    await ctx.provider.unsubscribe(plan.email)
    state.esp_status = str(EspStatus.UNSUBSCRIBED)
    return f"unsubscribed at {ctx.platform}"


async def refused(ctx: AccountSync, plan: ContactPlan, state: ContactState,
                   refusal: PermanentRefusal, common: dict) -> None:
    """Compliance state, forgotten or fake-looking address: recorded once, not retried until
    the contact changes in Kommo."""
    state.last_error = refusal.message
    state.fields_hash = plan.fields_hash
    await ctx.save(state)
    await ctx.record(outcome="failed", summary=f"{ctx.platform} refused the address",
                     detail=refusal.message, **common)


def remember(ctx: AccountSync, state: ContactState, lead: types.Lead, plan: ContactPlan) -> None:
    state.lead_id = lead.id
    state.lead_updated_at = lead.updated_at
    state.fields_hash = plan.fields_hash
    state.last_synced_at = utcnow()
    state.last_error = None


def describe(ctx: AccountSync, add: Sequence[str], remove: Sequence[str]) -> str:
    """In the admin's words: "moved to group “Customers”", "removed from tag “Lead”"."""
    if add:
        return f"{'moved' if remove else 'added'} to {ctx.segments_text(add)}"
    return f"removed from {ctx.segments_text(remove)}" if remove else ""


async def _leave_managed(ctx: AccountSync, email: str, segments: list[str]) -> None:
    managed = sorted(set(segments) & ctx.mapping.managed_segments)
    if managed:
        # A refused old address cannot be in anything we could remove it from.
        with contextlib.suppress(PermanentRefusal, UpstreamNotFound):
            await ctx.provider.set_membership(email, remove=managed)


async def release(ctx: AccountSync, lead_id: int) -> list[int]:
    """The lead left the mapping: it no longer decides anyone's segment (the ESP keeps them).
    Returns the contacts it decided."""
    states = await ctx.states_of_lead(lead_id)
    for state in states:
        state.lead_id, state.lead_updated_at = None, None
        await ctx.save(state)
    return [state.contact_id for state in states]


async def lead_deleted(ctx: AccountSync, lead_id: int) -> None:
    """Its contacts leave the segment it decided, unless another of their leads decides."""
    released = await release(ctx, lead_id)
    for contact_id in released:
        if await _reconcile_contact(ctx, contact_id):
            continue
        state = await ctx.state(contact_id)
        if state is None or not state.email:
            continue
        await _leave_managed(ctx, state.email, state.segments)
        await ctx.record(outcome="ok", summary=f"lead {lead_id} was deleted in Kommo: "
                         + (describe(ctx, [], state.segments) or "no segment to leave"),
                         contact_id=state.contact_id, email=state.email, lead_id=lead_id)
        state.segments, state.lead_id, state.lead_updated_at = [], None, None
        await ctx.save(state)


async def reconcile_contact(resources: Resources, account_id: int, contact_id: int) -> None:
    ctx = await AccountSync.load(resources, account_id)
    if ctx is not None:
        await _reconcile_contact(ctx, contact_id)


async def _reconcile_contact(ctx: AccountSync, contact_id: int) -> bool:
    """Re-read the contact and let its deciding lead apply; True when some lead decided."""
    contact = await ctx.kommo.contact(contact_id)
    state = await ctx.state(contact_id)
    if contact is None:
        await _contact_deleted(ctx, contact_id, state)
        return False
    company = (await ctx.company_names([contact])).get(contact.id)
    decided = await _deciding_lead(ctx, contact)
    if decided is not None:
        lead, rule = decided
        await apply(ctx, lead, rule, plan_contact(contact, lead.id, ctx.options, company), state)
        return True
    await _sync_unmapped(ctx, plan_contact(contact, None, ctx.options, company), state)
    return False


async def _deciding_lead(ctx: AccountSync, contact: types.Contact) -> tuple[types.Lead, Rule] | None:
    """The most recently updated of the contact's leads in a mapped stage, with its rule."""
    best = None
    for lead_id in contact.lead_ids:
        lead = await ctx.kommo.lead(lead_id)
        rule = ctx.mapping.rule_for(lead.pipeline_id, lead.status_id) if lead else None
        if lead is None or rule is None:
            continue
        if best is None or recency(lead) > recency(best[0]):
            best = (lead, rule)
    return best


async def _sync_unmapped(ctx: AccountSync, plan: ContactPlan, state: ContactState | None) -> None:
    """No lead of the contact is in a mapped stage: keep a known address's fields current, move
    a changed address out of the managed segments, and welcome new contacts when asked to."""
    welcome = ctx.options.new_contact_segment_id
    if plan.skip_reason or (state is None and not welcome):
        return
    state = await _follow_email(ctx, plan, state)
    if state.address_changed:
        return
    add = [welcome] if welcome and state.last_synced_at is None else []
    if not add and state.fields_hash == plan.fields_hash:
        return
    common = {"contact_id": plan.contact_id, "email": plan.email}
    try:
        await _upsert(ctx, plan, state, add, ())
    except PermanentRefusal as refusal:
        await refused(ctx, plan, state, refusal, common)
        return
    state.fields_hash, state.last_synced_at, state.last_error = plan.fields_hash, utcnow(), None
    await ctx.save(state)
    await ctx.record(outcome="ok", summary=describe(ctx, add, ()) or f"details updated at {ctx.platform}",
                     **common)


async def _contact_deleted(ctx: AccountSync, contact_id: int, state: ContactState | None) -> None:
    if state is None or not state.email:
        return
    if ctx.options.on_contact_delete == "forget":
        await ctx.provider.forget(state.email)
        summary = "contact deleted in Kommo: address forgotten at " + ctx.platform
    else:
        await _leave_managed(ctx, state.email, state.segments)
        summary = "contact deleted in Kommo: " + (describe(ctx, [], state.segments)
                                                   or "no segment to leave")
    await ctx.record(outcome="ok", summary=summary, contact_id=contact_id, email=state.email)
    state.segments, state.lead_id, state.lead_updated_at = [], None, None
    await ctx.save(state)

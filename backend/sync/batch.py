"""Many leads of one account at once — a busy account, a bulk move in Kommo, a backfill page: one
read of the leads, one of the contacts we cannot trust from storage, one of their companies, and
the writes grouped into the platform's bulk calls. Each contact's desired state comes from the same
code as a single lead (`desired.py`); one refused address is recorded on its contact and never
fails the batch, and a passing failure is retried for the leads it hit only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.errors import UpstreamRateLimited, UpstreamUnavailable
from backend.kommo import types
from backend.models import Activity, ContactState
from backend.providers.base import OPTED_OUT, BulkResult, Consent, EspStatus, SubscriberData
from backend.sync import reconcile
from backend.sync.account import AccountSync
from backend.sync.desired import ContactPlan, plan_contact, segment_change
from backend.sync.mapping import Rule

if TYPE_CHECKING:
    from backend.resources import Resources


FEW = 4  # up to this many contacts take the single-lead path: bulk calls pay per segment


@dataclass
class Decision:
    """One contact, the lead that decides it in this batch, and what to write."""

    lead: types.Lead
    rule: Rule
    plan: ContactPlan
    state: ContactState | None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


async def reconcile_leads(resources: Resources, account_id: int,
                          lead_ids: Sequence[int]) -> dict[int, Exception]:
    """Lead id → the passing failure that hit it (to retry); the others are done."""
    ctx = await AccountSync.load(resources, account_id)
    if ctx is None:
        return {}
    leads = {lead.id: lead for lead in await ctx.kommo.leads(lead_ids)}
    for lead_id in lead_ids:
        if lead_id not in leads:
            await reconcile.lead_deleted(ctx, lead_id)
    decisions, notes = await decide(ctx, leads.values())
    bulk = []
    for d in decisions:
        if d.state is not None and d.state.email not in (None, d.plan.email):
            # An address that changed takes the careful one-by-one path.
            await reconcile.apply(ctx, d.lead, d.rule, d.plan, d.state)
        else:
            bulk.append(d)
    return await write(ctx, bulk, notes)


async def decide(ctx: AccountSync, leads: Iterable[types.Lead]
                 ) -> tuple[list[Decision], list[Activity]]:
    """The decisions to write and the skips to record. Of several leads of one contact in the
    batch, the most recently updated decides (as across batches)."""
    mapped, notes = [], []
    for lead in leads:
        rule = ctx.mapping.rule_for(lead.pipeline_id, lead.status_id)
        if rule is None:
            await reconcile.release(ctx, lead.id)
        elif not lead.contacts:
            notes.append(ctx.activity(outcome="skipped", summary="skipped: the lead has no contact",
                                      lead_id=lead.id))
        else:
            mapped.append((lead, rule))
    deciding, notes = _deciding(ctx, mapped, notes)
    plans = await _plans(ctx, deciding)
    decisions = []
    for cid, (lead, rule) in deciding.items():
        plan, state = plans[cid]
        skipped, note = _skip(ctx, lead, plan, state)
        notes += [note] if note is not None else []
        if not skipped:
            decisions.append(Decision(lead, rule, plan, state))
    return decisions, notes


def _deciding(ctx: AccountSync, mapped: list[tuple[types.Lead, Rule]], notes: list[Activity]
              ) -> tuple[dict[int, tuple[types.Lead, Rule]], list[Activity]]:
    """Contact id → the lead that decides it; the other leads of a contact are noted."""
    candidates: dict[int, list[tuple[types.Lead, Rule]]] = {}
    for lead, rule in mapped:
        for cid in ([c.id for c in lead.contacts] if ctx.options.all_lead_contacts
                    else [lead.main_contact_id]):
            candidates.setdefault(cid, []).append((lead, rule))
    deciding = {}
    for cid, pairs in candidates.items():
        winner = max(pairs, key=lambda pair: reconcile.recency(pair[0]))
        deciding[cid] = winner
        notes += [ctx.activity(outcome="skipped", lead_id=lead.id, contact_id=cid,
                               summary=reconcile.decided_by(winner[0].id))
                  for lead, _rule in pairs if lead is not winner[0]]
    return deciding, notes


async def _plans(ctx: AccountSync, deciding: dict[int, tuple[types.Lead, Rule]]
                 ) -> dict[int, tuple[ContactPlan, ContactState | None]]:
    states = await ctx.states(list(deciding))
    stale = [cid for cid in deciding if not reconcile.trusted(ctx, states.get(cid))]
    fetched = {c.id: c for c in await ctx.kommo.contacts(stale)} if stale else {}
    companies = await ctx.company_names(fetched.values())
    plans = {}
    for cid, (lead, _rule) in deciding.items():
        state = states.get(cid)
        if cid in fetched:
            plans[cid] = (plan_contact(fetched[cid], lead.id, ctx.options, companies.get(cid)), state)
        elif cid not in stale and state is not None:
            plans[cid] = (reconcile.stored_plan(state, lead.id), state)
        else:  # deleted from Kommo since the lead was read: the contact job handles it
            plans[cid] = (ContactPlan(cid, None, "no contact", Consent.SUBSCRIBED), state)
    return plans


def _skip(ctx: AccountSync, lead: types.Lead, plan: ContactPlan,
          state: ContactState | None) -> tuple[bool, Activity | None]:
    """(nothing to write for this contact, the activity entry saying why): the single-lead
    path's reasons (a changed address never gets here: it takes that path)."""
    why = reconcile.why_not_written(lead, plan, state)
    if why is None and state is not None and state.address_changed:
        why = reconcile.address_moved(ctx)
    if why is None:
        return False, None
    common = {"lead_id": lead.id, "contact_id": plan.contact_id, "email": plan.email}
    return True, ctx.activity(outcome="skipped", summary=why, **common) if why else None


async def write(ctx: AccountSync, decisions: list[Decision], notes: list[Activity],
                tally: dict[str, Any] | None = None) -> dict[int, Exception]:
    """Upserts in bulk for new or changed contacts, segment calls in bulk for pure moves.
    `tally` (a backfill's counts) learns how many addresses were new, existing, opted out or
    refused."""
    if len(decisions) <= FEW:
        for d in decisions:
            await reconcile.apply(ctx, d.lead, d.rule, d.plan, d.state)
        await ctx.commit((), notes)
        return {}
    managed = ctx.mapping.managed_segments
    upserts, moves, unsubscribes = [], [], []
    for d in decisions:
        change = segment_change(d.rule, managed, d.state.segments if d.state else [])
        if change.unsubscribe:
            unsubscribes.append(d)
            continue
        new = d.state is None or d.state.last_synced_at is None
        # A contact we never wrote, or whose last write was cut short, may sit in any managed
        # segment at the ESP: the wanted one is sent and every other one taken away.
        unknown = new or d.state.esp_status is None
        if unknown:
            change = segment_change(d.rule, managed, [])
        d.add = list(change.add) + ([ctx.options.new_contact_segment_id]
                                    if new and ctx.options.new_contact_segment_id else [])
        d.remove = sorted(managed - set(d.add)) if unknown else list(change.remove)
        same_fields = d.state is not None and d.state.fields_hash == d.plan.fields_hash \
            and d.state.lead_id == d.lead.id and d.state.esp_status is not None
        if not same_fields:
            upserts.append(d)
        elif d.add or d.remove:
            moves.append(d)
    failures: dict[int, Exception] = {}
    await ctx.unverify(d.state for d in [*upserts, *moves])
    outcomes = await _upsert_all(ctx, upserts, failures, tally)
    outcomes += await _move_all(ctx, moves, failures)
    for d in unsubscribes:
        await reconcile.apply(ctx, d.lead, d.rule, d.plan, d.state)
    await _commit(ctx, outcomes, notes)
    return failures


async def _upsert_all(ctx: AccountSync, decisions: list[Decision], failures: dict[int, Exception],
                      tally: dict[str, Any] | None) -> list[tuple[Decision, str | None, str | None]]:
    if not decisions:
        return []
    result = await ctx.provider.bulk_upsert([SubscriberData(
        email=d.plan.email, fields=d.plan.fields, consent=d.plan.consent, add_segments=d.add,
        remove_segments=d.remove) for d in decisions])
    if tally is not None:
        _count(result, tally)
    outcomes = []
    for d in decisions:
        email = d.plan.email
        if email in result.retry:
            failures[d.lead.id] = UpstreamRateLimited(
                result.retry[email], service=ctx.provider.service, retry_after=result.retry_after) \
                if result.retry_after is not None \
                else UpstreamUnavailable(result.retry[email], service=ctx.provider.service)
        else:
            outcomes.append((d, result.failed.get(email), result.statuses.get(email)))
    return outcomes


def _count(result: BulkResult, tally: dict[str, Any]) -> None:
    tally["new_subscribers"] += len(result.created)
    tally["existing"] += len(set(result.succeeded) - result.created)
    tally["already_opted_out"] += sum(1 for email, status in result.statuses.items()
                                      if status in OPTED_OUT and email not in result.created)
    tally["errors"] += len(result.failed)


async def _move_all(ctx: AccountSync, decisions: list[Decision],
                    failures: dict[int, Exception]) -> list[tuple[Decision, str | None, str | None]]:
    refused: dict[str, str] = {}
    for segment in sorted({s for d in decisions for s in (*d.add, *d.remove)}):
        result = await ctx.provider.bulk_set_membership(
            segment, add=[d.plan.email for d in decisions if segment in d.add],
            remove=[d.plan.email for d in decisions if segment in d.remove])
        refused.update(result.failed)
    return [(d, refused.get(d.plan.email), None) for d in decisions]


async def _commit(ctx: AccountSync, outcomes: list[tuple[Decision, str | None, str | None]],
                  notes: list[Activity]) -> None:
    states, activities = [], list(notes)
    for d, refusal, status in outcomes:
        state = d.state or ContactState(account_id=ctx.account_id, contact_id=d.plan.contact_id)
        common = {"lead_id": d.lead.id, "contact_id": d.plan.contact_id, "email": d.plan.email}
        if refusal is not None:
            state.email, state.last_error, state.fields_hash = d.plan.email, refusal, d.plan.fields_hash
            activities.append(ctx.activity(outcome="failed", summary=f"{ctx.platform} refused the address",
                                           detail=refusal, **common))
        else:
            state.email = d.plan.email
            state.esp_status = str(status) if status else state.esp_status or str(_assumed(d))
            state.segments = sorted((set(state.segments) | set(d.add)) - set(d.remove))
            reconcile.remember(ctx, state, d.lead, d.plan)
            summary = reconcile.describe(ctx, d.add, d.remove) or f"details updated at {ctx.platform}"
            activities.append(ctx.activity(outcome="ok", summary=f"{summary} ({ctx.stage_text(d.lead)})",
                                           **common))
        states.append(state)
    await ctx.commit(states, activities)


def _assumed(decision: Decision) -> EspStatus:
    """A platform that does not say: a new address is what we asked for."""
    return EspStatus.UNCONFIRMED if decision.plan.consent == Consent.PENDING else EspStatus.ACTIVE


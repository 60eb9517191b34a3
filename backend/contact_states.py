"""`contact_state`: what we last wrote to the email platform for each contact, account id first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.models import ContactState


async def get_contact_state(
    session: AsyncSession, account_id: int, contact_id: int
) -> ContactState | None:
    query = select(ContactState).where(ContactState.account_id == account_id,
                                       ContactState.contact_id == contact_id)
    return (await session.exec(query)).first()


async def get_contact_states(
    session: AsyncSession, account_id: int, contact_ids: Sequence[int]
) -> dict[int, ContactState]:
    query = select(ContactState).where(ContactState.account_id == account_id,
                                       col(ContactState.contact_id).in_(list(contact_ids)))
    return {state.contact_id: state for state in (await session.exec(query)).all()}


async def find_contact_states_by_email(
    session: AsyncSession, account_id: int, email: str
) -> Sequence[ContactState]:
    query = select(ContactState).where(ContactState.account_id == account_id,
                                       ContactState.email == email.lower())
    return (await session.exec(query)).all()


async def contact_states_deciding(
    session: AsyncSession, account_id: int, lead_ids: Sequence[int]
) -> dict[int, list[ContactState]]:
    """Lead id → the contact states whose segment that lead decides (what its last reconcile
    wrote); leads deciding nobody are absent."""
    query = select(ContactState).where(ContactState.account_id == account_id,
                                       col(ContactState.lead_id).in_(list(lead_ids)))
    found: dict[int, list[ContactState]] = {}
    for state in (await session.exec(query)).all():
        found.setdefault(state.lead_id, []).append(state)  # type: ignore[arg-type]
    return found


async def find_contact_states_by_lead(
    session: AsyncSession, account_id: int, lead_id: int
) -> Sequence[ContactState]:
    query = select(ContactState).where(ContactState.account_id == account_id,
                                       ContactState.lead_id == lead_id)
    return (await session.exec(query)).all()


async def save_contact_state(session: AsyncSession, state: ContactState) -> None:
    await save_contact_states(session, [state])


async def save_contact_states(session: AsyncSession, states: Sequence[ContactState]) -> None:
    for state in states:
        if state.email:
            state.email = state.email.lower()
        session.add(state)
        if state.id is not None:  # written even when unchanged: it replaces `mark_unverified`'s NULL
            flag_modified(state, "esp_status")
    await session.flush()


async def mark_unverified(session: AsyncSession, account_id: int, contact_ids: Sequence[int]) -> None:
    """Before writing to the platform: until the results are stored, these contacts' stored
    status and segments are not to be trusted (a worker killed mid-write leaves them so)."""
    if contact_ids:
        await session.exec(update(ContactState).where(
            ContactState.account_id == account_id, col(ContactState.contact_id).in_(list(contact_ids)))
            .values(esp_status=None))

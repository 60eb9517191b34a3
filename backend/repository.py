"""Every tenant-owned query, account id first. Nothing else in the backend writes SQL.

Functions take the session and the account id explicitly, so no query can forget its tenant.
Only the few lookups that *find* the tenant (by hook key, for the operator's CLI) are unscoped,
and their names say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, update
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import insert_for
from backend.models import (
    ENCRYPTED_COLUMNS,
    Account,
    AccountOptions,
    AccountStatus,
    Backfill,
    ContactState,
    EspConnection,
    Job,
    JobState,
    KommoCatchup,
    KommoToken,
    MappingRule,
    NoteReceipt,
    utcnow,
)
from backend.security import Vault, new_hook_key
from backend.settings import Secret

# --- accounts -------------------------------------------------------------------------------


async def get_account(session: AsyncSession, account_id: int) -> Account | None:
    return await session.get(Account, account_id)


async def find_account_by_hook_key(session: AsyncSession, hook_key: str) -> Account | None:
    """Unscoped by design: the hook key in a webhook URL is what identifies the tenant."""
    result = await session.exec(select(Account).where(Account.hook_key == hook_key))
    return result.first()


async def find_esp_connection_by_hook_key(
    session: AsyncSession, hook_key: str
) -> EspConnection | None:
    """Unscoped by design: the ESP webhook URL's key identifies the tenant."""
    result = await session.exec(select(EspConnection).where(EspConnection.hook_key == hook_key))
    return result.first()


async def list_all_accounts(session: AsyncSession) -> Sequence[Account]:
    """For the operator (CLI, /admin) only: every tenant."""
    return (await session.exec(select(Account).order_by(col(Account.id)))).all()


async def upsert_account(
    session: AsyncSession, account_id: int, *, host: str, subdomain: str, name: str = ""
) -> Account:
    """Create the account, or refresh what Kommo says of it on reinstall. A reinstall keeps the
    hook key, mapping, options and ESP connection the admin configured."""
    account = await session.get(Account, account_id)
    if account is None:
        account = Account(id=account_id, host=host, subdomain=subdomain, name=name,
                          hook_key=new_hook_key())
    else:
        account.host, account.subdomain = host, subdomain
        account.name = name or account.name
        account.status = AccountStatus.ACTIVE
    session.add(account)
    await session.flush()
    return account


async def delete_account(session: AsyncSession, account_id: int) -> None:
    """The account and, by cascade, everything stored for it (the sandbox's fresh start)."""
    await session.exec(delete(Account).where(col(Account.id) == account_id))


async def set_account_status(session: AsyncSession, account_id: int, status: str) -> None:
    account = await session.get(Account, account_id)
    if account is not None:
        account.status = status
        session.add(account)


async def set_kommo_webhook_registered(
    session: AsyncSession, account_id: int, registered: bool
) -> None:
    account = await session.get(Account, account_id)
    if account is not None:
        account.kommo_webhook_registered = registered
        session.add(account)


# --- secrets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KommoTokens:
    access_token: Secret
    refresh_token: Secret
    expires_at: datetime


async def save_kommo_tokens(
    session: AsyncSession, vault: Vault, account_id: int, tokens: KommoTokens
) -> None:
    row = await session.get(KommoToken, account_id) or KommoToken(account_id=account_id)
    row.access_token_enc = vault.encrypt(tokens.access_token.reveal())
    row.refresh_token_enc = vault.encrypt(tokens.refresh_token.reveal())
    row.expires_at = tokens.expires_at
    row.refreshed_at = utcnow()
    session.add(row)


async def get_kommo_tokens(
    session: AsyncSession, vault: Vault, account_id: int
) -> KommoTokens | None:
    row = await session.get(KommoToken, account_id)
    if row is None:
        return None
    return KommoTokens(
        access_token=Secret(vault.decrypt(row.access_token_enc)),
        refresh_token=Secret(vault.decrypt(row.refresh_token_enc)),
        expires_at=row.expires_at,
    )


async def get_kommo_token_row(session: AsyncSession, account_id: int) -> KommoToken | None:
    return await session.get(KommoToken, account_id)


async def lock_kommo_tokens(
    session: AsyncSession, vault: Vault, account_id: int
) -> KommoTokens | None:
    """The token pair with its row locked until the transaction ends (`SELECT … FOR UPDATE` on
    PostgreSQL). SQLite renders no FOR UPDATE: callers there serialise within the process."""
    query = (select(KommoToken).where(KommoToken.account_id == account_id).with_for_update()
             .execution_options(populate_existing=True))
    row = (await session.exec(query)).first()
    if row is None:
        return None
    return KommoTokens(access_token=Secret(vault.decrypt(row.access_token_enc)),
                       refresh_token=Secret(vault.decrypt(row.refresh_token_enc)),
                       expires_at=row.expires_at)


async def list_idle_kommo_accounts(session: AsyncSession, refreshed_before: datetime) -> Sequence[int]:
    """For the keep-alive job, across tenants: active accounts whose Kommo tokens were last
    refreshed before the cutoff."""
    query = (select(KommoToken.account_id)
             .join(Account, col(Account.id) == col(KommoToken.account_id))
             .where(Account.status == AccountStatus.ACTIVE,
                    col(KommoToken.refreshed_at) < refreshed_before)
             .order_by(col(KommoToken.account_id)))
    return (await session.exec(query)).all()


async def get_esp_connection(session: AsyncSession, account_id: int) -> EspConnection | None:
    return await session.get(EspConnection, account_id)


async def save_esp_connection(session: AsyncSession, connection: EspConnection) -> None:
    session.add(connection)
    await session.flush()


async def mark_key_rejected(session: AsyncSession, account_id: int) -> bool:
    """The ESP refused the stored key. True only for the call that changed the state, so the
    admin is told once per key, not once per failing job."""
    result = await session.exec(
        update(EspConnection).where(col(EspConnection.account_id) == account_id,
                                    col(EspConnection.key_rejected_at).is_(None),
                                    col(EspConnection.api_key_enc) != "")
        .values(key_rejected_at=utcnow()).execution_options(synchronize_session=False))
    return result.rowcount == 1


async def delete_esp_connection(session: AsyncSession, account_id: int) -> None:
    await session.exec(delete(EspConnection).where(col(EspConnection.account_id) == account_id))


async def erase_account_secrets(session: AsyncSession, account_id: int) -> None:
    """Disconnect: the Kommo tokens, the ESP key and the webhook secret are gone; the admin's
    mapping stays, and so does the ESP connection's hook key, so the ESP's later deliveries get
    410 Gone (Mailchimp then disables its webhook) rather than 404."""
    await session.exec(delete(KommoToken).where(col(KommoToken.account_id) == account_id))
    await session.exec(
        update(EspConnection).where(col(EspConnection.account_id) == account_id)
        .values(api_key_enc="", webhook_secret_enc=None))


async def rotate_encrypted_secrets(session: AsyncSession, vault: Vault) -> int:
    """Re-encrypt every stored secret of every account with the newest key; returns the count."""
    count = 0
    for model, columns in ENCRYPTED_COLUMNS.items():
        for row in (await session.exec(select(model))).all():
            for column in columns:
                value = getattr(row, column)
                if value:
                    setattr(row, column, vault.rotate(value))
                    count += 1
            session.add(row)
    return count


# --- mapping and options --------------------------------------------------------------------


async def get_mapping(session: AsyncSession, account_id: int) -> Sequence[MappingRule]:
    query = (select(MappingRule).where(MappingRule.account_id == account_id)
             .order_by(col(MappingRule.pipeline_id), col(MappingRule.status_id)))
    return (await session.exec(query)).all()


async def replace_mapping(
    session: AsyncSession, account_id: int, rules: Sequence[MappingRule]
) -> None:
    await session.exec(delete(MappingRule).where(col(MappingRule.account_id) == account_id))
    for rule in rules:
        rule.account_id = account_id
        session.add(rule)
    await session.flush()


async def get_options(session: AsyncSession, account_id: int) -> dict:
    row = await session.get(AccountOptions, account_id)
    return dict(row.options) if row else {}


async def get_labels(session: AsyncSession, account_id: int) -> dict:
    row = await session.get(AccountOptions, account_id)
    return dict(row.labels) if row else {}


async def save_options(session: AsyncSession, account_id: int, options: dict,
                       labels: dict | None = None) -> None:
    row = await session.get(AccountOptions, account_id) or AccountOptions(account_id=account_id)
    row.options = dict(options)
    if labels is not None:
        row.labels = dict(labels)
    session.add(row)


# --- contacts and activity ------------------------------------------------------------------


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


async def add_note_receipt(session: AsyncSession, account_id: int, dedupe_key: str) -> None:
    session.add(NoteReceipt(account_id=account_id, dedupe_key=dedupe_key))
    await session.flush()


async def has_note_receipt(session: AsyncSession, account_id: int, dedupe_key: str) -> bool:
    query = select(NoteReceipt.id).where(NoteReceipt.account_id == account_id,
                                         NoteReceipt.dedupe_key == dedupe_key)
    return (await session.exec(query)).first() is not None


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


# --- jobs ----------------------------------------------------------------------------------


async def cancel_account_jobs(session: AsyncSession, account_id: int, reason: str) -> int:
    """Disconnect: pending jobs of the account end as done, with the reason as their last error."""
    result = await session.exec(
        update(Job).where(col(Job.account_id) == account_id, col(Job.state) == JobState.PENDING)
        .values(state=JobState.DONE, last_error=reason, finished_at=utcnow()))
    return result.rowcount


# --- catch-up from Kommo's event log ------------------------------------------------------


async def get_kommo_catchup(session: AsyncSession, account_id: int) -> KommoCatchup | None:
    return await session.get(KommoCatchup, account_id)


async def save_kommo_catchup(session: AsyncSession, catchup: KommoCatchup) -> None:
    """Insert or update; the row may come from another (closed) session."""
    await session.merge(catchup)
    await session.flush()


async def accounts_without_catchup(session: AsyncSession) -> Sequence[int]:
    """Unscoped by design: the active accounts whose catch-up the worker has not scheduled yet."""
    scheduled = exists().where(KommoCatchup.account_id == Account.id)
    query = (select(Account.id).where(Account.status == AccountStatus.ACTIVE, ~scheduled)
             .order_by(col(Account.id)))
    return (await session.exec(query)).all()


async def add_kommo_catchups(session: AsyncSession, rows: Sequence[KommoCatchup]) -> None:
    """New cursors; one another process added meanwhile wins (no error)."""
    if not rows:
        return
    statement = insert_for(session)(KommoCatchup.__table__).on_conflict_do_nothing(
        index_elements=["account_id"])
    connection = await session.connection()
    await connection.execute(statement, [
        {"account_id": r.account_id, "next_at": r.next_at, "cursor_at": r.cursor_at, "window_to": None,
         "next_page": 1, "seen": {}, "email_field_id": None, "webhook_missing_since": None,
         "last_run_at": None, "enqueued_total": 0} for r in rows])


async def claim_due_catchups(session: AsyncSession, now: datetime, next_at: datetime) -> list[int]:
    """Unscoped by design: the active accounts whose sweep is due, each moved on to `next_at` in
    the same statement, so of two processes claiming at once only one gets each account."""
    active = select(Account.id).where(Account.status == AccountStatus.ACTIVE)
    result = await session.exec(
        update(KommoCatchup)
        .where(col(KommoCatchup.next_at) <= now, col(KommoCatchup.account_id).in_(active))
        .values(next_at=next_at).returning(KommoCatchup.account_id)
        .execution_options(synchronize_session=False))
    return sorted(row[0] for row in result.all())


# --- stats ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountStats:
    synced_contacts: int
    pending_jobs: int
    failed_jobs: int
    last_sync_at: datetime | None


async def account_stats(session: AsyncSession, account_id: int) -> AccountStats:
    contacts = await session.exec(
        select(func.count(), func.max(ContactState.last_synced_at))
        .where(ContactState.account_id == account_id,
               col(ContactState.last_synced_at).is_not(None)))
    synced, last_sync_at = contacts.one()
    jobs = await session.exec(
        select(Job.state, func.count()).where(Job.account_id == account_id,
                                              col(Job.state).in_([JobState.PENDING, JobState.DEAD]))
        .group_by(Job.state))
    by_state = dict(jobs.all())
    return AccountStats(synced_contacts=synced, pending_jobs=by_state.get(JobState.PENDING, 0),
                        failed_jobs=by_state.get(JobState.DEAD, 0), last_sync_at=last_sync_at)


# --- backfill -------------------------------------------------------------------------------


async def add_backfill(session: AsyncSession, backfill: Backfill) -> Backfill:
    session.add(backfill)
    await session.flush()
    return backfill


async def get_backfill(session: AsyncSession, account_id: int, backfill_id: int) -> Backfill | None:
    query = select(Backfill).where(Backfill.account_id == account_id, Backfill.id == backfill_id)
    return (await session.exec(query)).first()


async def latest_backfill(session: AsyncSession, account_id: int) -> Backfill | None:
    query = (select(Backfill).where(Backfill.account_id == account_id)
             .order_by(col(Backfill.id).desc()).limit(1))
    return (await session.exec(query)).first()

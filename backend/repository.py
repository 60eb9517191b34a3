"""Every tenant-owned query, account id first; `contact_states.py`, `backfills.py` and
`kommo_catchups.py` hold those of their own tables. Nothing else in the backend writes SQL.

Functions take the session and the account id explicitly, so no query can forget its tenant.
Only the few lookups that *find* the tenant (by hook key, for the operator's CLI) are unscoped,
and their names say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.models import (
    ENCRYPTED_COLUMNS,
    Account,
    AccountOptions,
    AccountStatus,
    ContactState,
    EspConnection,
    Job,
    JobState,
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


# --- note receipts --------------------------------------------------------------------------


async def add_note_receipt(session: AsyncSession, account_id: int, dedupe_key: str) -> None:
    session.add(NoteReceipt(account_id=account_id, dedupe_key=dedupe_key))
    await session.flush()


async def has_note_receipt(session: AsyncSession, account_id: int, dedupe_key: str) -> bool:
    query = select(NoteReceipt.id).where(NoteReceipt.account_id == account_id,
                                         NoteReceipt.dedupe_key == dedupe_key)
    return (await session.exec(query)).first() is not None


# --- jobs ----------------------------------------------------------------------------------


async def cancel_account_jobs(session: AsyncSession, account_id: int, reason: str) -> int:
    """Disconnect: pending jobs of the account end as done, with the reason as their last error."""
    result = await session.exec(
        update(Job).where(col(Job.account_id) == account_id, col(Job.state) == JobState.PENDING)
        .values(state=JobState.DONE, last_error=reason, finished_at=utcnow()))
    return result.rowcount


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

"""Kommo token lifecycle: a valid access token per account, refreshed early and exactly once.

Refresh tokens rotate and are single-use, so refreshes of one account are serialised: within a
process by an asyncio lock, across processes by `SELECT … FOR UPDATE` on the token row
(PostgreSQL). SQLite is the single-process engine and gets the process lock only: holding a
transaction across the outbound call would take its write lock (BEGIN IMMEDIATE) and stall every
writer, our own rate limiter included. Whoever gets the lock re-reads the row first, so callers
that queued behind a refresh use its result instead of refreshing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from backend import alerts, db, repository
from backend.errors import UpstreamError, UpstreamUnauthorized
from backend.kommo import oauth
from backend.kommo.budget import budget_key, wait_for_budget
from backend.models import Account, AccountStatus, utcnow
from backend.repository import KommoTokens
from backend.settings import Secret

if TYPE_CHECKING:
    from backend.resources import Resources

log = logging.getLogger("mailsync.kommo.tokens")

REFRESH_MARGIN = timedelta(minutes=5)
# Refresh tokens die after 3 months unused; a monthly refresh keeps idle accounts alive.
KEEP_ALIVE_IDLE = timedelta(days=30)

_PROCESS_LOCKS: weakref.WeakKeyDictionary[object, dict[int, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


async def access_token(resources: Resources, account_id: int) -> Secret:
    """A valid access token, refreshed first when it expires within 5 minutes."""
    async with resources.reads() as session:
        account = await repository.get_account(session, account_id)
        tokens = await repository.get_kommo_tokens(session, resources.vault, account_id)
    _, tokens = _usable(account, tokens)
    if not _expiring(tokens):
        return tokens.access_token
    return (await refresh(resources, account_id)).access_token


async def refresh(resources: Resources, account_id: int, *, rejected: Secret | None = None) -> KommoTokens:
    """Refresh the pair unless it is still good and is not `rejected` (the access token a 401
    refused): N concurrent callers cause one refresh call and all get its result."""
    async with _process_lock(resources, account_id), _row_lock(resources) as locked:
        account, current = _usable(*await _load(resources, locked, account_id))
        if not _expiring(current) and (rejected is None or current.access_token != rejected):
            return current
        new = await _refresh_remote(resources, account, current)
        await _store(resources, locked, account_id, new)
    # Only now, committed, is the new pair used: a lost commit leaves the old refresh token,
    # which Kommo keeps honouring until the new one is first used.
    return new


async def mark_needs_reauth(resources: Resources, account_id: int) -> None:
    """Kommo refuses us for this account: the admin must reinstall. Queued jobs are kept; the
    admin is told once, when the account changes state."""
    async with resources.sessions() as session, session.begin():
        account = await repository.get_account(session, account_id)
        if account is None or account.status == AccountStatus.NEEDS_REAUTH:
            return
        await repository.set_account_status(session, account_id, AccountStatus.NEEDS_REAUTH)
        await alerts.kommo_authorization_lost(session, account_id)
    log.warning("Kommo refused the account's authorization; it needs to be reinstalled")


async def keep_alive_refresh(resources: Resources, *, now: datetime | None = None) -> int:
    """Refresh the tokens of active accounts idle for 30 days; returns how many were refreshed."""
    async with resources.sessions() as session:
        idle = await repository.list_idle_kommo_accounts(session, (now or utcnow()) - KEEP_ALIVE_IDLE)
    refreshed = 0
    for account_id in idle:
        async with resources.sessions() as session:
            tokens = await repository.get_kommo_tokens(session, resources.vault, account_id)
        try:
            if tokens is not None:
                await refresh(resources, account_id, rejected=tokens.access_token)
                refreshed += 1
        except UpstreamError as exc:
            log.warning("keep-alive refresh of account %s failed: %s", account_id, exc.code)
    return refreshed


class AccountTokens:
    """The token source `KommoClient` uses for an installed account."""

    def __init__(self, resources: Resources, account_id: int) -> None:
        self._resources, self._account_id = resources, account_id

    async def access_token(self) -> Secret:
        return await access_token(self._resources, self._account_id)

    async def after_unauthorized(self, rejected: Secret) -> Secret:
        return (await refresh(self._resources, self._account_id, rejected=rejected)).access_token

    async def refused_again(self) -> None:
        await mark_needs_reauth(self._resources, self._account_id)


class FixedToken:
    """A token source for one just-issued access token (the install's first calls)."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    async def access_token(self) -> Secret:
        return self._token

    async def after_unauthorized(self, rejected: Secret) -> Secret:
        raise UpstreamUnauthorized("Kommo refused a token it had just issued", service="kommo")

    async def refused_again(self) -> None:
        return None


def _expiring(tokens: KommoTokens) -> bool:
    return tokens.expires_at - utcnow() <= REFRESH_MARGIN


def _usable(account: Account | None, tokens: KommoTokens | None) -> tuple[Account, KommoTokens]:
    if account is None or tokens is None:
        raise UpstreamUnauthorized("this account has no Kommo authorization", code="not_installed",
                                   service="kommo")
    if account.status != AccountStatus.ACTIVE:
        raise UpstreamUnauthorized(f"the account is {account.status}", code=account.status,
                                   service="kommo")
    return account, tokens


async def _refresh_remote(resources: Resources, account: Account, current: KommoTokens) -> KommoTokens:
    await wait_for_budget(resources, budget_key(account.id))
    try:
        return await oauth.refresh_tokens(resources, account.host, current.refresh_token)
    except UpstreamError as exc:
        if not oauth.is_grant_refusal(exc):
            raise
        await mark_needs_reauth(resources, account.id)
        raise UpstreamUnauthorized(f"Kommo refused the refresh: {exc.message}",
                                   code=AccountStatus.NEEDS_REAUTH, service="kommo",
                                   status=exc.status) from exc


def _process_lock(resources: Resources, account_id: int) -> asyncio.Lock:
    # Per engine, so two Resources in one process (as tests build them) behave like two processes.
    per_engine = _PROCESS_LOCKS.setdefault(resources.engine, {})
    return per_engine.setdefault(account_id, asyncio.Lock())


@contextlib.asynccontextmanager
async def _row_lock(resources: Resources) -> AsyncIterator[AsyncSession | None]:
    """PostgreSQL: a transaction whose FOR UPDATE holds the token row until it commits.
    SQLite: none (see the module docstring)."""
    if db.is_sqlite(resources.engine):
        yield None
        return
    async with resources.sessions() as session, session.begin():
        yield session


async def _load(
    resources: Resources, locked: AsyncSession | None, account_id: int
) -> tuple[Account | None, KommoTokens | None]:
    if locked is not None:
        tokens = await repository.lock_kommo_tokens(locked, resources.vault, account_id)
        return await repository.get_account(locked, account_id), tokens
    async with resources.sessions() as session:
        return (await repository.get_account(session, account_id),
                await repository.get_kommo_tokens(session, resources.vault, account_id))


async def _store(
    resources: Resources, locked: AsyncSession | None, account_id: int, tokens: KommoTokens
) -> None:
    if locked is not None:
        await repository.save_kommo_tokens(locked, resources.vault, account_id, tokens)
        return
    async with resources.sessions() as session, session.begin():
        await repository.save_kommo_tokens(session, resources.vault, account_id, tokens)

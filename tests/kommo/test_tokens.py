"""Token lifecycle against the simulated Kommo: early refresh, exactly one refresh under
concurrency (SQLite and PostgreSQL), refusal → needs_reauth with jobs kept, keep-alive."""

import asyncio
from datetime import timedelta

import httpx2
import pytest

from backend import activity_log, db, jobs, repository
from backend.errors import UpstreamUnauthorized, UpstreamUnavailable
from backend.kommo import tokens
from backend.kommo.client import KommoClient
from backend.models import AccountStatus, utcnow
from backend.resources import open_resources
from backend.sandbox.kommo_store import KommoProblem
from tests.kommo.fixtures import ACME, BETA, expire_stored_tokens, seed_tokens, stored_tokens

REFRESH = "/oauth2/access_token"


def refreshes(kommo):
    return len(kommo.calls(REFRESH, grant_type="refresh_token"))


async def account_status(resources, account_id=ACME):
    async with resources.sessions() as session:
        return (await repository.get_account(session, account_id)).status


async def test_a_fresh_token_is_used_as_it_is(kommo, kommo_resources):
    seeded = await seed_tokens(kommo_resources, kommo)
    assert await tokens.access_token(kommo_resources, ACME) == seeded.access_token
    assert refreshes(kommo) == 0


async def test_a_token_expiring_within_five_minutes_is_refreshed_first(kommo, kommo_resources):
    seeded = await seed_tokens(kommo_resources, kommo)
    await expire_stored_tokens(kommo_resources, left=timedelta(minutes=4, seconds=50))
    token = await tokens.access_token(kommo_resources, ACME)
    stored = await stored_tokens(kommo_resources)
    assert token != seeded.access_token and stored.access_token == token
    assert stored.refresh_token != seeded.refresh_token
    assert timedelta(hours=23, minutes=59) < stored.expires_at - utcnow() <= timedelta(hours=24)
    assert refreshes(kommo) == 1
    assert kommo.store.account_for_token(token.reveal()).id == ACME  # the new token works


async def test_twenty_concurrent_callers_with_an_expired_token_cause_one_refresh(kommo, kommo_resources):
    await seed_tokens(kommo_resources, kommo)
    await expire_stored_tokens(kommo_resources)
    got = await asyncio.gather(*(tokens.access_token(kommo_resources, ACME) for _ in range(20)))
    assert len(set(got)) == 1
    assert refreshes(kommo) == 1
    assert (await stored_tokens(kommo_resources)).access_token == got[0]


async def test_callers_rejected_with_the_same_token_refresh_once(kommo, kommo_resources):
    seeded = await seed_tokens(kommo_resources, kommo)
    results = await asyncio.gather(*(tokens.refresh(kommo_resources, ACME, rejected=seeded.access_token)
                                     for _ in range(10)))
    assert len({r.access_token for r in results}) == 1 and results[0].access_token != seeded.access_token
    assert refreshes(kommo) == 1


async def test_two_processes_refresh_once(kommo, kommo_resources, kommo_settings, outbound, engine):
    """Two Resources with their own engines and process locks, as two worker processes have;
    only the database row lock can serialise them."""
    if db.is_sqlite(engine):
        pytest.skip("SQLite is the single-process engine: its refreshes serialise in-process only")
    await seed_tokens(kommo_resources, kommo)
    await expire_stored_tokens(kommo_resources)
    async with httpx2.AsyncClient(transport=outbound) as http_client, \
            open_resources(kommo_settings, http_client=http_client) as other:
        got = await asyncio.gather(*(tokens.access_token(s, ACME)
                                     for _ in range(10) for s in (kommo_resources, other)))
    assert len(set(got)) == 1
    assert refreshes(kommo) == 1


async def test_a_refused_refresh_marks_needs_reauth_and_keeps_queued_jobs(kommo, kommo_resources, outbound):
    await seed_tokens(kommo_resources, kommo)
    await expire_stored_tokens(kommo_resources)
    async with kommo_resources.sessions() as session, session.begin():
        await jobs.enqueue(session, [jobs.JobSpec(ACME, "reconcile_lead", "lead:1", {"lead_id": 1})])
    kommo.store.revoke(ACME)
    with pytest.raises(UpstreamUnauthorized) as refused:
        await tokens.access_token(kommo_resources, ACME)
    assert refused.value.code == "needs_reauth"
    assert await account_status(kommo_resources) == AccountStatus.NEEDS_REAUTH
    async with kommo_resources.sessions() as session:
        assert (await repository.account_stats(session, ACME)).pending_jobs == 1
    calls = len(outbound.requests)
    with pytest.raises(UpstreamUnauthorized):  # no further calls until the admin reinstalls
        await tokens.access_token(kommo_resources, ACME)
    assert len(outbound.requests) == calls
    await tokens.mark_needs_reauth(kommo_resources, ACME)  # a second refusal: told once only
    async with kommo_resources.sessions() as session:
        told = [(a.outcome, a.direction, a.summary, a.detail)
                for a in await activity_log.list_activity(session, ACME)]
    assert told == [(
        "failed", "to_kommo", "Kommo no longer accepts mailsync's authorization",
        "Syncing is paused; changes wait in the queue and nothing is lost. An administrator of this "
        "Kommo account must install the mailsync widget again (Settings → Integrations → mailsync).")]


async def test_a_failed_refresh_that_is_not_a_refusal_leaves_the_account_active(
        kommo, kommo_resources, monkeypatch):
    await seed_tokens(kommo_resources, kommo)
    await expire_stored_tokens(kommo_resources)

    def broken(form):
        raise KommoProblem(502, "Bad gateway")

    monkeypatch.setattr(kommo.store, "token", broken)
    with pytest.raises(UpstreamUnavailable):
        await tokens.access_token(kommo_resources, ACME)
    assert await account_status(kommo_resources) == AccountStatus.ACTIVE


async def test_a_401_refreshes_once_and_retries_once(kommo, kommo_resources):
    await seed_tokens(kommo_resources, kommo)
    kommo.store.expire_access_tokens(ACME)  # Kommo no longer takes it; we still think it valid
    info = await KommoClient(kommo_resources, ACME).account()
    assert info.id == ACME
    assert [(r.path, r.status) for r in kommo.requests] == [
        ("/api/v4/account", 401), (REFRESH, 200), ("/api/v4/account", 200)]


async def test_a_second_401_after_refreshing_marks_needs_reauth(kommo, kommo_resources, monkeypatch):
    await seed_tokens(kommo_resources, kommo)

    def refuse_every_token(token):
        raise KommoProblem(401, "Invalid user name or password")

    monkeypatch.setattr(kommo.store, "account_for_token", refuse_every_token)
    with pytest.raises(UpstreamUnauthorized) as refused:
        await KommoClient(kommo_resources, ACME).pipelines()
    assert refused.value.code == "needs_reauth"
    assert [(r.path, r.status) for r in kommo.requests] == [
        ("/api/v4/leads/pipelines", 401), (REFRESH, 200), ("/api/v4/leads/pipelines", 401)]
    assert await account_status(kommo_resources) == AccountStatus.NEEDS_REAUTH


async def test_keep_alive_refreshes_accounts_idle_for_thirty_days(kommo, kommo_resources):
    acme, beta = await seed_tokens(kommo_resources, kommo), await seed_tokens(kommo_resources, kommo, BETA)
    kommo.store.add_account(40000001, "idle-but-revoked")
    await seed_tokens(kommo_resources, kommo, 40000001)
    async with kommo_resources.sessions() as session, session.begin():
        for account_id in (ACME, 40000001):
            row = await repository.get_kommo_token_row(session, account_id)
            row.refreshed_at = utcnow() - timedelta(days=31)
            session.add(row)
        await repository.set_account_status(session, 40000001, AccountStatus.NEEDS_REAUTH)
    assert await tokens.keep_alive_refresh(kommo_resources) == 1
    assert (await stored_tokens(kommo_resources, ACME)).refresh_token != acme.refresh_token
    assert (await stored_tokens(kommo_resources, BETA)).refresh_token == beta.refresh_token
    assert refreshes(kommo) == 1
    assert await tokens.keep_alive_refresh(kommo_resources) == 0  # just refreshed: not idle


async def test_an_account_without_tokens_is_not_installed(kommo_resources):
    with pytest.raises(UpstreamUnauthorized) as missing:
        await tokens.access_token(kommo_resources, 123)
    assert missing.value.code == "not_installed"

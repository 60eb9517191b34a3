from datetime import timedelta

import pytest
from sqlalchemy import text

from backend import activity_log, contact_states, db, repository
from backend.models import Activity, ContactState, EspConnection, Job, MappingRule, utcnow
from backend.repository import KommoTokens
from backend.security import Vault, new_fernet_key
from backend.settings import Secret

A, B = 1001, 2002


@pytest.fixture
async def session(engine):
    async with db.session_factory(engine)() as session:
        yield session


OLD_KEY, NEW_KEY = Secret(new_fernet_key()), Secret(new_fernet_key())


@pytest.fixture
def vault():
    return Vault([OLD_KEY])


async def _two_accounts(session):
    for account_id, host in ((A, "alpha.kommo.com"), (B, "beta.kommo.com")):
        await repository.upsert_account(session, account_id, host=host, subdomain=host[:5])
        await contact_states.save_contact_state(session, ContactState(
            account_id=account_id, contact_id=7, email=f"Shared-{account_id}@Example.com",
            last_synced_at=utcnow()))
        await activity_log.add_activity(session, account_id, Activity(
            direction="to_esp", summary=f"moved for {account_id}", outcome="ok"))
        await repository.replace_mapping(session, account_id, [
            MappingRule(account_id=0, pipeline_id=1, status_id=account_id, action="remove")])
        await repository.save_options(session, account_id, {"notes_on_sync": account_id == A})
    await session.commit()


async def test_queries_are_scoped_by_account(session):
    await _two_accounts(session)
    state = await contact_states.get_contact_state(session, A, 7)
    assert state.account_id == A and state.email == "shared-1001@example.com"
    assert await contact_states.find_contact_states_by_email(session, A, "shared-2002@example.com") == []
    assert [s.account_id for s in
            await contact_states.find_contact_states_by_email(session, B, "SHARED-2002@example.com")] == [B]
    assert [a.summary for a in await activity_log.list_activity(session, A)] == ["moved for 1001"]
    assert [r.status_id for r in await repository.get_mapping(session, B)] == [B]
    assert await repository.get_options(session, A) == {"notes_on_sync": True}
    assert await repository.get_options(session, B) == {"notes_on_sync": False}
    assert (await repository.account_stats(session, A)).synced_contacts == 1


async def test_reinstall_keeps_hook_key_and_configuration(session):
    first = await repository.upsert_account(session, A, host="alpha.kommo.com", subdomain="alpha")
    hook_key = first.hook_key
    await repository.save_options(session, A, {"notes_on_sync": True})
    await session.commit()
    again = await repository.upsert_account(session, A, host="alpha.amocrm.com", subdomain="alpha")
    await session.commit()
    assert again.hook_key == hook_key and again.host == "alpha.amocrm.com"
    assert await repository.get_options(session, A) == {"notes_on_sync": True}
    assert (await repository.find_account_by_hook_key(session, hook_key)).id == A


async def test_tokens_are_encrypted_at_rest_and_rotate(engine, session, vault):
    await repository.upsert_account(session, A, host="alpha.kommo.com", subdomain="alpha")
    expires = utcnow() + timedelta(hours=24)
    await repository.save_kommo_tokens(session, vault, A, KommoTokens(
        Secret("access-plain-123"), Secret("refresh-plain-456"), expires))
    await repository.save_esp_connection(session, EspConnection(
        account_id=A, kind="mailerlite", api_key_enc=vault.encrypt("esp-key-plain-789"),
        hook_key="hk-esp"))
    await session.commit()
    async with engine.connect() as conn:
        dump = str((await conn.execute(text("SELECT * FROM kommo_token"))).all()) + str(
            (await conn.execute(text("SELECT * FROM esp_connection"))).all())
    for plain in ("access-plain-123", "refresh-plain-456", "esp-key-plain-789"):
        assert plain not in dump
    tokens = await repository.get_kommo_tokens(session, vault, A)
    assert tokens.access_token.reveal() == "access-plain-123"
    assert tokens.expires_at == expires.replace(microsecond=tokens.expires_at.microsecond)

    assert await repository.rotate_encrypted_secrets(session, Vault([NEW_KEY, OLD_KEY])) == 3
    await session.commit()
    session.expire_all()
    only_new = Vault([NEW_KEY])
    assert (await repository.get_esp_connection(session, A)).api_key_enc != ""
    assert (await repository.get_kommo_tokens(session, only_new, A)).refresh_token.reveal() == (
        "refresh-plain-456")


async def test_activity_is_capped_per_account(session, monkeypatch):
    monkeypatch.setattr(activity_log, "ACTIVITY_CAP", 3)
    await _two_accounts(session)
    for n in range(5):
        await activity_log.add_activity(session, A, Activity(
            direction="to_kommo", summary=f"event {n}", outcome="ok"))
    await session.commit()
    assert [a.summary for a in await activity_log.list_activity(session, A)] == [
        "event 4", "event 3", "event 2"]
    assert len(await activity_log.list_activity(session, B)) == 1


async def test_successes_never_push_the_last_failures_out(session, monkeypatch):
    monkeypatch.setattr(activity_log, "ACTIVITY_CAP", 3)
    monkeypatch.setattr(activity_log, "FAILURE_CAP", 2)
    await _two_accounts(session)
    for n, outcome in enumerate(["failed", "failed", "failed", *["ok"] * 10, "skipped"]):
        await activity_log.add_activity(session, A, Activity(
            direction="to_esp", summary=f"event {n}", outcome=outcome))
    await session.commit()
    assert [(a.summary, a.outcome) for a in await activity_log.list_activity(session, A)] == [
        ("event 13", "skipped"), ("event 12", "ok"), ("event 11", "ok"),
        ("event 2", "failed"), ("event 1", "failed")]


async def test_stats_count_pending_and_dead_jobs_of_the_account_only(session):
    await _two_accounts(session)
    for account_id, state, key in ((A, "pending", "a1"), (A, "dead", "a2"), (A, "dead", "a3"),
                                   (B, "pending", "b1")):
        session.add(Job(account_id=account_id, kind="reconcile_lead", coalesce_key=key, state=state))
    await session.commit()
    stats = await repository.account_stats(session, A)
    assert (stats.pending_jobs, stats.failed_jobs) == (1, 2)


async def test_cancel_account_jobs_touches_only_that_accounts_pending_jobs(session):
    await _two_accounts(session)
    for account_id, state, key in ((A, "pending", "a1"), (A, "running", "a2"), (B, "pending", "b1")):
        session.add(Job(account_id=account_id, kind="reconcile_lead", coalesce_key=key, state=state))
    await session.commit()
    assert await repository.cancel_account_jobs(session, A, "account disconnected") == 1
    await session.commit()
    assert (await repository.account_stats(session, A)).pending_jobs == 0
    assert (await repository.account_stats(session, B)).pending_jobs == 1

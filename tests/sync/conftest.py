import pytest

from backend import db, repository


@pytest.fixture
def sessions(engine):
    return db.session_factory(engine)


@pytest.fixture
def make_accounts(sessions):
    async def make(*account_ids, status="active"):
        async with sessions() as session, session.begin():
            for account_id in account_ids:
                account = await repository.upsert_account(
                    session, account_id, host=f"a{account_id}.kommo.com", subdomain=f"a{account_id}")
                account.status = status
        return account_ids

    return make


@pytest.fixture
def fast_budgets(monkeypatch):
    """The real budgets (Kommo 5/s, MailerLite 110/min) are exercised in their own tests; here
    they would only make the scenarios slow."""
    monkeypatch.setattr("backend.kommo.budget.RATE", 10_000.0)
    monkeypatch.setattr("backend.kommo.budget.BURST", 10_000.0)
    monkeypatch.setattr("backend.providers.mailerlite.api.RATE_PER_SECOND", 10_000.0)
    monkeypatch.setattr("backend.providers.mailerlite.api.BURST", 10_000)


@pytest.fixture(params=["mailerlite", "mailchimp"])
async def world(request, database_url, engine, fast_budgets):
    from tests.sync.world import open_world

    async for opened in open_world(request.param, database_url, engine):
        yield opened

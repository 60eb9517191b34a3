import pytest


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

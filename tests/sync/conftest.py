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

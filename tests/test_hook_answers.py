"""Our answers to Kommo's webhooks per account over the last 2 hours (Kommo disables a webhook
answered badly more than 100 times in 2 hours): counted in memory, flushed to `hook_answer`, read
back with what is not flushed yet; and the route wrapper that records them."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from starlette.routing import Route

from backend import hook_answers, repository
from backend.models import HookAnswer

ACCOUNT = 29085424
BODY = (Path(__file__).parent / "fixtures" / "kommo" / "leads_status__two_leads.txt").read_bytes()


async def counts(sessions, account_id=ACCOUNT, now=None):
    async with sessions() as session:
        return (await hook_answers.answers_last_2h(session, [account_id], now)).get(account_id, (0, 0))


async def test_answers_are_counted_flushed_and_read_back(engine, sessions, make_accounts):
    await make_accounts(ACCOUNT)
    now = time.time()
    for status in (200, 200, 404, 500):
        hook_answers.record(engine, ACCOUNT, status, at=now)
    hook_answers.record(engine, ACCOUNT, 200, seconds=2.5, at=now)  # too late for Kommo
    hook_answers.record(engine, ACCOUNT, 500, at=now - 3 * 3600)  # outside the 2 hours
    hook_answers.record(engine, 1, 500, at=now)  # an account that does not exist (any more)
    assert await counts(sessions) == (2, 3)  # not flushed yet: this process's counts
    await hook_answers.flush(engine)
    async with sessions() as session:
        rows = (await session.exec(select(HookAnswer).order_by(HookAnswer.bucket))).all()
        assert await hook_answers.bad_answers_last_2h(session, ACCOUNT) == 3
    assert [(r.ok, r.bad) for r in rows] == [(0, 1), (2, 3)]
    assert await counts(sessions) == (2, 3)
    hook_answers.record(engine, ACCOUNT, 503, at=now)
    assert await counts(sessions) == (2, 4)  # stored plus pending
    await hook_answers.flush(engine)
    assert await counts(sessions) == (2, 4)
    later = datetime.fromtimestamp(now, UTC) + timedelta(hours=2, minutes=11)
    assert await counts(sessions, now=later) == (0, 0)


def test_a_bad_answer_is_not_2xx_or_later_than_two_seconds():
    assert [hook_answers.is_bad(s) for s in (200, 204, 299, 301, 400, 410, 429, 500)] == [
        False, False, False, True, True, True, True, True]
    assert hook_answers.is_bad(200, seconds=2.01) and not hook_answers.is_bad(200, seconds=1.99)


@pytest.fixture
def counted_app(app):
    """The app with the Kommo webhook route wrapped as the route module will wrap it."""
    routes = app.router.routes
    for n, route in enumerate(routes):
        if getattr(route, "path", None) == "/webhooks/kommo/{hook_key}":
            routes[n] = Route(route.path, hook_answers.counted(route.endpoint), methods=["POST"])
    return app


async def test_the_route_records_each_answer_for_its_account(counted_app, client, sessions, engine):
    async with sessions() as session, session.begin():
        account = await repository.upsert_account(session, ACCOUNT, host="acme.kommo.com",
                                                  subdomain="acme")
    url = f"/webhooks/kommo/{account.hook_key}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    statuses = [(await client.post(url, content=BODY, headers=form)).status_code,
                (await client.post(url, content=b"leads[status][0]=%%%", headers=form)).status_code,
                (await client.post("/webhooks/kommo/unknown-key", content=BODY, headers=form)).status_code]
    async with sessions() as session, session.begin():
        await repository.set_account_status(session, ACCOUNT, "disconnected")
    del counted_app.state.hook_cache  # the route caches the account's status for a few seconds
    statuses.append((await client.post(url, content=BODY, headers=form)).status_code)
    assert statuses == [200, 400, 404, 410]
    await hook_answers.flush(engine)
    assert await counts(sessions) == (1, 2)  # the unknown key belongs to nobody


def test_a_route_wrapped_twice_counts_once():
    async def endpoint(request):
        raise AssertionError("not called")

    once = hook_answers.counted(endpoint)
    assert hook_answers.counted(once) is once and once.__wrapped__ is endpoint

"""GET /api/widget/activity/hourly: synced / skipped / failed per hour, 48 rows, oldest first."""

from datetime import timedelta

from backend import activity_log
from backend.activity_hourly import truncate_hour
from backend.models import Activity, utcnow
from tests.kommo.fixtures import widget_token

PATH = "/api/widget/activity/hourly"


def token(settings, account_id):
    return {"X-Auth-Token": widget_token(settings, account_id, is_admin=False)}


async def add(sessions, account_id, outcome, at):
    async with sessions() as session, session.begin():
        await activity_log.add_activity(session, account_id, Activity(
            at=at, direction="to_esp", summary="entry", outcome=outcome))


async def hourly(client, settings, account_id):
    """The answer and the hour it ended with (asked again if an hour began meanwhile)."""
    while True:
        hour = truncate_hour(utcnow())
        answer = await client.get(PATH, headers=token(settings, account_id))
        if truncate_hour(utcnow()) == hour:
            return answer, hour


def iso(hour):
    return hour.isoformat().replace("+00:00", "Z")


async def test_hourly_counts_of_the_last_48_hours_oldest_first(client, settings, sessions,
                                                               make_accounts):
    await make_accounts(7, 8)
    base = truncate_hour(utcnow())
    entries = [("ok", base), ("ok", base), ("skipped", base), ("failed", base - timedelta(hours=1)),
               ("ok", base - timedelta(hours=47)), ("skipped", base - timedelta(hours=47)),
               ("failed", base - timedelta(hours=60))]
    for outcome, at in entries:
        await add(sessions, 7, outcome, at + timedelta(minutes=5))
    await add(sessions, 8, "failed", base)  # another account's: never shown to account 7
    answer, hour = await hourly(client, settings, 7)
    assert answer.status_code == 200
    expected = []
    for offset in range(47, -1, -1):
        at = hour - timedelta(hours=offset)
        counts = {o: sum(1 for outcome, h in entries if h == at and outcome == o)
                  for o in ("ok", "skipped", "failed")}
        expected.append({"hour": iso(at), **counts})
    assert answer.json() == expected
    if hour == base:  # the usual case, spelled out
        assert expected[-1] == {"hour": iso(base), "ok": 2, "skipped": 1, "failed": 0}
        assert expected[-2] == {"hour": iso(base - timedelta(hours=1)), "ok": 0, "skipped": 0,
                                "failed": 1}
        assert expected[0] == {"hour": iso(base - timedelta(hours=47)), "ok": 1, "skipped": 1,
                               "failed": 0}


async def test_an_account_without_activity_gets_48_zero_hours(client, settings, make_accounts):
    await make_accounts(7)
    answer, hour = await hourly(client, settings, 7)
    assert answer.json() == [{"hour": iso(hour - timedelta(hours=47 - i)), "ok": 0, "skipped": 0,
                              "failed": 0} for i in range(48)]


async def test_hourly_needs_a_token_of_an_installed_account(client, settings):
    assert (await client.get(PATH)).status_code == 401
    missing = await client.get(PATH, headers=token(settings, 404404))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "account_not_found")

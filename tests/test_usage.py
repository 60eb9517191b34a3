"""Vendor calls and 429s per account and hour (`usage.py`), the hourly activity counts
(`activity_hourly.py`) and the vendor-labelled series of /metrics."""

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from prometheus_client import REGISTRY
from sqlmodel import select

from backend import activity_hourly, activity_log, http, logs, usage
from backend.activity_hourly import HourCounts, truncate_hour
from backend.models import Activity, ActivityHourly, VendorUsage
from backend.resources import open_resources
from tests.conftest import make_settings
from tests.polling import eventually

BASE = "https://vendor.test"


def vendor_client() -> httpx2.AsyncClient:
    """Answers 429 on /limited and 200 elsewhere, like a vendor whose budget ran out once."""
    return httpx2.AsyncClient(transport=httpx2.MockTransport(
        lambda request: httpx2.Response(429 if request.url.path == "/limited" else 200)))


async def calls(client, account_id, vendor, n, *, limited=0):
    """`n` calls for the account, `limited` of them answered 429. In a task of its own, so the
    account bound here does not leak into the test's context."""

    async def run():
        logs.bind_account(account_id)
        for i in range(n):
            path = "/limited" if i < limited else "/ok"
            await http.send(client, "GET", BASE + path, service=vendor)

    await asyncio.create_task(run())


def hour_now() -> datetime:
    return datetime.fromtimestamp(time.time() // 3600 * 3600, UTC)


async def stored(sessions):
    async with sessions() as session:
        rows = (await session.exec(select(VendorUsage))).all()
    return rows


def totals(rows):
    found: dict[tuple[int, str], tuple[int, int]] = {}
    for row in rows:
        calls_, limited = found.get((row.account_id, row.vendor), (0, 0))
        found[row.account_id, row.vendor] = (calls_ + row.calls, limited + row.rate_limited)
    return found


async def test_counts_per_account_and_vendor_reach_the_table_exactly(sessions, make_accounts):
    await make_accounts(7, 8)
    first_hour = hour_now()
    async with vendor_client() as client:
        await calls(client, 7, "kommo", 5, limited=1)
        await calls(client, 7, "mailerlite", 2)
        await calls(client, 8, "mailchimp", 3, limited=2)
        await calls(client, None, "kommo", 4)  # no account (an install): /metrics only
        await calls(client, 99, "kommo", 1)  # an account deleted since: dropped, not an error
        async with sessions() as session:
            assert await usage.by_account(session, [7], first_hour) == {7: {}}  # nothing yet
        await usage.flush(sessions, client)
        rows = await stored(sessions)
        assert totals(rows) == {(7, "kommo"): (5, 1), (7, "mailerlite"): (2, 0),
                                (8, "mailchimp"): (3, 2)}
        assert {row.hour for row in rows} <= {first_hour, hour_now()}
        await calls(client, 7, "kommo", 2, limited=2)
        await usage.flush(sessions, client)
        await usage.flush(sessions, client)  # nothing left to add
    assert totals(await stored(sessions))[7, "kommo"] == (7, 3)
    if hour_now() == first_hour:  # the read by hour (when the test did not straddle one)
        async with sessions() as session:
            by_account = await usage.by_account(session, [7, 8, 9], first_hour)
        assert by_account == {7: {"kommo": usage.Usage(7, 3), "mailerlite": usage.Usage(2, 0)},
                              8: {"mailchimp": usage.Usage(3, 2)}, 9: {}}


async def test_two_resources_on_one_database_add_up(database_url, engine, sessions, make_accounts):
    """Two processes' worth of resources (each its own engine and client) flush into one table:
    every flush adds to the row, none overwrites it."""
    await make_accounts(7)
    settings = make_settings(database_url)
    async with (vendor_client() as one, vendor_client() as two,
                open_resources(settings, http_client=one) as first,
                open_resources(settings, http_client=two) as second):
        await calls(first.http, 7, "kommo", 3)
        await calls(second.http, 7, "kommo", 4, limited=1)
        await calls(second.http, 7, "mailchimp", 2)
    # Closing the resources flushed what each had counted.
    assert totals(await stored(sessions)) == {(7, "kommo"): (7, 1), (7, "mailchimp"): (2, 0)}


async def test_the_flusher_adds_the_counts_every_interval(sessions, make_accounts):
    await make_accounts(7)
    async with vendor_client() as client:
        flusher = usage.Flusher(sessions, client, interval=0.01)
        flusher.start()
        try:
            await calls(client, 7, "kommo", 2)
            await eventually(lambda: _kommo_calls(sessions, 2), message="2 calls stored")
            await calls(client, 7, "kommo", 1, limited=1)
            await eventually(lambda: _kommo_calls(sessions, 3), message="3 calls stored")
        finally:
            await flusher.stop()
    assert totals(await stored(sessions)) == {(7, "kommo"): (3, 1)}


async def _kommo_calls(sessions, expected):
    return totals(await stored(sessions)).get((7, "kommo"), (0, 0))[0] == expected


async def test_prune_drops_hours_past_the_retention(sessions, make_accounts):
    await make_accounts(7)
    now = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)
    old, kept = now - timedelta(days=8), now - timedelta(days=6)
    async with sessions() as session, session.begin():
        for hour in (truncate_hour(old), truncate_hour(kept)):
            session.add(VendorUsage(account_id=7, vendor="kommo", hour=hour, calls=1))
            session.add(ActivityHourly(account_id=7, hour=hour, outcome="ok", count=1))
    await usage.prune(sessions, now)
    async with sessions() as session:
        assert [r.hour for r in (await session.exec(select(VendorUsage))).all()] == [
            truncate_hour(kept)]
        assert [r.hour for r in (await session.exec(select(ActivityHourly))).all()] == [
            truncate_hour(kept)]


def _sample(name, vendor):
    return REGISTRY.get_sample_value(name, {"vendor": vendor}) or 0.0


async def test_metrics_count_429s_by_vendor_and_never_name_an_account(client, make_accounts):
    await make_accounts(7)
    before = _sample("mailsync_outbound_rate_limited_total", "mailerlite")
    async with vendor_client() as vendor:
        await calls(vendor, 7, "mailerlite", 3, limited=2)
    assert _sample("mailsync_outbound_rate_limited_total", "mailerlite") == before + 2
    text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert f'mailsync_outbound_rate_limited_total{{vendor="mailerlite"}} {before + 2}' in lines
    assert any(line.startswith('mailsync_outbound_calls_total{service="mailerlite",status="429"}')
               for line in lines)
    label_names = {name for line in lines for name in re.findall(r'[{,](\w+)="', line)}
    assert label_names and not any("account" in name for name in label_names), label_names


# --- activity per hour ------------------------------------------------------------------------

AT = datetime(2026, 12, 10, 15, 42, tzinfo=UTC)


async def add(sessions, account_id, outcome, at):
    async with sessions() as session, session.begin():
        await activity_log.add_activity(session, account_id, Activity(
            at=at, direction="to_esp", summary="entry", outcome=outcome))


async def test_each_activity_entry_counts_in_its_hour(sessions, make_accounts):
    await make_accounts(7, 8)
    for outcome, at in [("ok", AT), ("ok", AT.replace(minute=1)), ("skipped", AT),
                        ("failed", AT - timedelta(hours=1)), ("ok", AT - timedelta(hours=47)),
                        ("ok", AT - timedelta(hours=48))]:  # the last is outside 48 hours
        await add(sessions, 7, outcome, at)
    await add(sessions, 8, "failed", AT)
    async with sessions() as session:
        series = await activity_hourly.series(session, [7, 8, 9], AT)
    hour = truncate_hour(AT)
    assert len(series[7]) == 48 and series[7][0].hour == hour - timedelta(hours=47)
    assert series[7][-1] == HourCounts(hour, ok=2, skipped=1, failed=0)
    assert series[7][-2] == HourCounts(hour - timedelta(hours=1), failed=1)
    assert series[7][0] == HourCounts(hour - timedelta(hours=47), ok=1)
    assert sum(h.ok + h.skipped + h.failed for h in series[7]) == 5
    assert series[8][-1] == HourCounts(hour, failed=1)
    assert series[9] == [HourCounts(hour - timedelta(hours=47 - i)) for i in range(48)]


async def test_a_rolled_back_entry_is_not_counted(sessions, make_accounts):
    await make_accounts(7)
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            await activity_log.add_activity(session, 7, Activity(
                at=AT, direction="to_esp", summary="entry", outcome="ok"))
            raise RuntimeError("the job failed after writing its entry")
    async with sessions() as session:
        assert (await session.exec(select(ActivityHourly))).all() == []

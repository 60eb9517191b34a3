import base64
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from backend import activity_log, repository, usage
from backend.activity_hourly import HourCounts, truncate_hour
from backend.app import create_app
from backend.models import Activity, Backfill, Job, utcnow
from backend.routes import activity_chart
from backend.settings import Secret
from backend.throttle import Guards
from tests.conftest import make_settings
from tests.test_usage import calls, vendor_client


def basic(password, user="admin"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def admin(database_url, engine):
    app = create_app(make_settings(database_url, ADMIN_PASSWORD="operator-pass-123"), engine=engine)
    async with app.router.lifespan_context(app):
        resources = app.state.resources
        async with resources.sessions() as session, session.begin():
            await repository.upsert_account(session, 5, host="acme.kommo.com", subdomain="acme")
            session.add(Job(account_id=5, kind="reconcile_lead", coalesce_key="reconcile_lead:5:1",
                            state="dead", attempts=12, last_error="upstream_unavailable: 503"))
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://t") as client:
            yield client, resources


async def test_admin_is_absent_without_a_password(client):
    assert (await client.get("/admin", headers=basic("x"))).status_code == 404


@pytest.mark.parametrize("headers", [{}, basic("wrong"), {"Authorization": "Basic !!!"},
                                     {"Authorization": "Bearer operator-pass-123"}])
async def test_admin_asks_for_the_password(admin, headers):
    client, _ = admin
    response = await client.get("/admin", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="mailsync admin"'


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


@pytest.fixture
async def guarded(database_url, engine):
    """The admin app with a frozen clock for its limits, and a client per caller address."""
    app = create_app(make_settings(database_url, ADMIN_PASSWORD="operator-pass-123"), engine=engine)
    clock = Clock()
    app.state.guards = Guards(clock=clock)
    clients = []

    def at(ip):
        clients.append(httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, client=(ip, 5000)),
                                          base_url="http://t"))
        return clients[-1]

    async with app.router.lifespan_context(app):
        yield at, clock
    for client in clients:
        await client.aclose()


async def test_five_wrong_passwords_lock_that_address_out_for_a_minute(guarded):
    at, clock = guarded
    attacker, operator = at("198.51.100.9"), at("192.0.2.10")
    for _ in range(5):
        assert (await attacker.get("/admin", headers=basic("guess"))).status_code == 401
    locked = await attacker.get("/admin", headers=basic("operator-pass-123"))  # even the right one
    assert (locked.status_code, locked.headers["retry-after"]) == (429, "60")
    retry = await attacker.post("/admin/jobs/1/retry", headers=basic("operator-pass-123"))
    assert (retry.status_code, retry.json()["error"]["code"]) == (429, "too_many_requests")
    assert retry.headers["retry-after"] == "60"
    assert (await operator.get("/admin", headers=basic("operator-pass-123"))).status_code == 200
    clock.now += 60
    assert (await attacker.get("/admin", headers=basic("operator-pass-123"))).status_code == 200


async def test_a_bare_request_is_not_a_wrong_password(guarded):
    at, _ = guarded
    browser = at("192.0.2.10")
    for _ in range(10):  # a browser asks without credentials first
        assert (await browser.get("/admin")).status_code == 401
    assert (await browser.get("/admin", headers=basic("operator-pass-123"))).status_code == 200


async def test_fifty_wrong_passwords_from_many_addresses_stop_all_guessing_for_a_minute(guarded):
    at, clock = guarded
    for n in range(10):
        bot = at(f"203.0.113.{n + 1}")
        for _ in range(5):
            assert (await bot.get("/admin", headers=basic(f"guess-{n}"))).status_code == 401
    fresh = at("203.0.113.200")
    assert (await fresh.get("/admin", headers=basic("guess"))).status_code == 429
    assert (await fresh.get("/admin", headers=basic("operator-pass-123"))).status_code == 429
    clock.now += 60
    assert (await fresh.get("/admin", headers=basic("operator-pass-123"))).status_code == 200


async def test_dashboard_lists_accounts_and_dead_letters_then_retries(admin):
    client, resources = admin
    page = await client.get("/admin", headers=basic("operator-pass-123"))
    assert page.status_code == 200
    assert "acme.kommo.com" in page.text and "upstream_unavailable: 503" in page.text
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    refused = await client.post("/admin/jobs/1/retry", headers=basic("operator-pass-123"),
                                data={"csrf": "forged", "account_id": "5"})
    assert refused.status_code == 400
    done = await client.post("/admin/jobs/1/retry", headers=basic("operator-pass-123"),
                             data={"csrf": csrf, "account_id": "5"})
    assert (done.status_code, done.headers["location"]) == (303, "/admin")
    async with resources.sessions() as session:
        job = await session.get(Job, 1)
    assert (job.state, job.attempts) == ("pending", 0)


async def test_dashboard_shows_vendor_calls_token_health_backfill_and_the_chart(admin):
    client, resources = admin
    now = utcnow()
    async with resources.sessions() as session, session.begin():
        await repository.save_kommo_tokens(session, resources.vault, 5, repository.KommoTokens(
            Secret("access"), Secret("refresh"), datetime(2031, 1, 2, 3, 4, tzinfo=UTC)))
        await repository.set_account_status(session, 5, "needs_reauth")
        session.add(Backfill(account_id=5, state="done", dry_run=True, total=40, done=40))
        session.add(Backfill(account_id=5, state="running", dry_run=False, total=1000, done=250,
                             started_at=datetime(2030, 6, 7, 8, 9, tzinfo=UTC)))
        for outcome in ("ok", "ok", "skipped", "failed"):
            await activity_log.add_activity(session, 5, Activity(
                at=now, direction="to_esp", summary="entry", outcome=outcome))
    async with vendor_client() as vendor:
        await calls(vendor, 5, "kommo", 4, limited=1)
        await calls(vendor, 5, "mailerlite", 2)
        await usage.flush(resources.sessions, vendor)
    page = await client.get("/admin", headers=basic("operator-pass-123"))
    if truncate_hour(utcnow()) != truncate_hour(now):
        pytest.skip("an hour began during the test")  # the calls went to the previous hour
    this_hour = cell(page.text, "usage")
    assert 'data-vendor="kommo">kommo 4 <span class="bad">(1×429)</span>' in this_hour
    assert 'data-vendor="mailerlite">mailerlite 2</span>' in this_hour
    assert cell(page.text, "usage muted") == '<span class="muted">none</span>'  # previous hour
    assert "valid until 2031-01-02 03:04 UTC" in page.text and "needs reauthorization" in page.text
    backfill = cell(page.text, "backfill")
    assert "running</span>" in backfill and "250/1000" in backfill
    assert "started 2030-06-07 08:09" in backfill and "preview" not in backfill
    assert f"<title>{now:%Y-%m-%d %H:00} UTC: 2 synced, 1 skipped, 1 failed</title>" in page.text
    assert page.text.count("<svg") == 1


def cell(html, css_class):
    return html.split(f'<td class="{css_class}">')[1].split("</td>")[0].strip()


def test_the_chart_stacks_synced_skipped_failed_scaled_to_the_peak():
    hour = datetime(2026, 12, 10, 15, tzinfo=UTC)
    chart = str(activity_chart.svg([HourCounts(hour - timedelta(hours=1)),
                                    HourCounts(hour, ok=2, skipped=1, failed=1)]))
    assert chart.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and "<script" not in chart
    assert "<title>2026-12-10 14:00 UTC: 0 synced, 0 skipped, 0 failed</title>" in chart
    # Peak 4 per hour fills the 48-unit plot: 2 synced = 24 units, then 12 and 12 above them.
    assert ('<rect x="8" y="24.00" width="6" height="24.00" fill="#12b76a"/>'
            '<rect x="8" y="12.00" width="6" height="12.00" fill="#98a2b3"/>'
            '<rect x="8" y="0.00" width="6" height="12.00" fill="#d92d20"/>') in chart
    assert "now · peak 4/h" in chart

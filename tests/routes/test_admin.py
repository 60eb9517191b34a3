import base64

import httpx2
import pytest

from backend import repository
from backend.app import create_app
from backend.models import Job
from tests.conftest import make_settings


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

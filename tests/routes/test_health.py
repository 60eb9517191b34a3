from backend import db
from backend.app import create_app
from tests.conftest import make_settings


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert len(response.headers["x-request-id"]) == 16


async def test_readyz_when_migrated(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "migration": "0006"}


async def test_readyz_refuses_an_unmigrated_database(database_url):
    import httpx2

    engine = db.create_engine(database_url)
    app = create_app(make_settings(database_url), engine=engine)
    try:
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/readyz")
    finally:
        await engine.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "migrations_pending"
    assert "mailsync migrate" in response.json()["error"]["message"]


async def test_readyz_reports_an_unreachable_database(tmp_path):
    import httpx2

    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unreachable"


async def test_metrics_exposes_prometheus_text(client):
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'mailsync_http_requests_total{method="GET",status="200"}' in response.text
    assert 'mailsync_jobs{state="pending"} 0.0' in response.text
    assert "mailsync_queue_oldest_pending_seconds 0.0" in response.text


async def test_unknown_route_uses_the_error_shape(client):
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}

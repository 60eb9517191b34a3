import httpx2
import pytest

from backend.app import create_app
from tests.kommo.fixtures import kommo, kommo_app, kommo_resources, kommo_settings, outbound, web

__all__ = ["kommo", "kommo_app", "kommo_resources", "kommo_settings", "outbound", "web"]


@pytest.fixture
async def offline_app(settings, engine):
    """Our app whose every outbound call is recorded and refused: webhook handlers must make
    none, and the fixture fails the test if one did."""
    outbound: list[httpx2.Request] = []
    recorder = httpx2.AsyncClient(transport=httpx2.MockTransport(
        lambda request: outbound.append(request) or httpx2.Response(500)))
    app = create_app(settings, engine=engine, http_client=recorder)
    async with recorder, app.router.lifespan_context(app):
        yield app
    assert outbound == []


@pytest.fixture
async def offline_client(offline_app):
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=offline_app),
                                  base_url="http://t") as client:
        yield client

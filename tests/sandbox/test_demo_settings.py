"""The sandbox's settings and transport: every remote is this process, nothing else is reached."""

from __future__ import annotations

import httpx2
import pytest

from backend.errors import ConfigurationError
from backend.sandbox.loopback import LeavingTheSandbox, LoopbackTransport
from backend.sandbox.server import sandbox_settings
from tests.conftest import TEST_SECRET_KEY


def test_sandbox_settings_point_every_remote_at_this_process():
    settings = sandbox_settings({"KOMMO_CLIENT_ID": "real", "KOMMO_CLIENT_SECRET": "real-secret",
                                 "SECRET_KEY": TEST_SECRET_KEY,
                                 "MAILCHIMP_API_BASE_URL": "https://{dc}.api.mailchimp.com/3.0"},
                                "0.0.0.0", 9000)  # noqa: S104
    base = "http://127.0.0.1:9000/simulated"
    assert (settings.sandbox_mode, settings.public_url, settings.database_url) == (
        True, "http://127.0.0.1:9000", "sqlite+aiosqlite:///./var/sandbox.db")
    assert (settings.kommo_api_base_url, settings.mailerlite_api_base_url,
            settings.mailerlite_classic_api_base_url, settings.mailchimp_api_base_url) == (
        f"{base}/kommo", f"{base}/mailerlite/api", f"{base}/mailerlite/api/v2", base + "/mailchimp/{dc}/3.0")
    honoured = sandbox_settings({"PUBLIC_URL": "https://demo.example.org", "SECRET_KEY": TEST_SECRET_KEY,
                                 "DATABASE_URL": "sqlite+aiosqlite:////tmp/x.db"}, "127.0.0.1", 8000)
    assert (honoured.public_url, honoured.database_url) == ("https://demo.example.org",
                                                            "sqlite+aiosqlite:////tmp/x.db")
    with pytest.raises(ConfigurationError, match="ENV=production"):
        sandbox_settings({"ENV": "production"}, "127.0.0.1", 8000)


async def test_the_loopback_transport_rewrites_the_public_origin_and_refuses_the_rest():
    seen: list[str] = []
    inner = httpx2.MockTransport(lambda request: seen.append(str(request.url)) or httpx2.Response(204))
    transport = LoopbackTransport("http://127.0.0.1:9000", "https://demo.example.org", inner=inner)
    async with httpx2.AsyncClient(transport=transport) as client:
        await client.post("https://demo.example.org/webhooks/kommo/abc")
        await client.get("http://127.0.0.1:9000/healthz")
        with pytest.raises(LeavingTheSandbox):
            await client.get("https://connect.mailerlite.com/api/subscribers")
    assert seen == ["http://127.0.0.1:9000/webhooks/kommo/abc", "http://127.0.0.1:9000/healthz"]

import json
import logging

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend import logs
from backend.middleware import MAX_BODY_BYTES, loggable_path


@pytest.fixture
async def echo_client(app, client):
    async def echo(request: Request) -> JSONResponse:
        logs.bind_account(4242)
        logging.getLogger("mailsync.test").info("echo")
        return JSONResponse({"bytes": len(await request.body())})

    app.router.routes.append(Route("/echo", echo, methods=["POST"]))
    return client


async def test_body_at_the_limit_passes(echo_client):
    response = await echo_client.post("/echo", content=b"x" * MAX_BODY_BYTES)
    assert response.status_code == 200
    assert response.json() == {"bytes": MAX_BODY_BYTES}


async def test_declared_oversized_body_is_refused_with_413(echo_client):
    response = await echo_client.post("/echo", content=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_streamed_oversized_body_is_refused_with_413(echo_client):
    async def chunks():
        for _ in range(17):
            yield b"y" * 65536

    response = await echo_client.post("/echo", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_cors_preflight_from_a_kommo_account_is_allowed(client):
    response = await client.options("/api/widget/account", headers={
        "Origin": "https://acme.kommo.com", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Auth-Token"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://acme.kommo.com"
    assert "x-auth-token" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("origin", ["https://acme.amocrm.ru", "https://acme.amocrm.com"])
def test_cors_other_kommo_domains(origin):
    import re

    from backend.app import CORS_ORIGIN_REGEX
    assert re.fullmatch(CORS_ORIGIN_REGEX, origin)


@pytest.mark.parametrize("origin", ["https://evil.example", "https://kommo.com.evil.example",
                                    "http://acme.kommo.com", "https://evilkommo.com"])
async def test_cors_preflight_from_elsewhere_is_refused(client, origin):
    response = await client.options("/api/widget/account", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Auth-Token"})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_log_lines_are_json_with_request_and_account_ids(echo_client, caplog):
    caplog.set_level(logging.INFO)
    formatter = logs.JsonFormatter()
    await echo_client.post("/echo", content=b"{}", headers={"X-Request-ID": "req-abcdef12"})
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name in ("mailsync.test", "mailsync.access")]
    assert [line["msg"] for line in lines] == ["echo", "POST /echo 200"]
    assert all(line["request_id"] == "req-abcdef12" for line in lines)
    assert all(line["account_id"] == 4242 for line in lines)


def test_webhook_keys_never_reach_the_log():
    assert loggable_path("/webhooks/kommo/SECRETKEY123") == "/webhooks/kommo/***"
    assert loggable_path("/webhooks/mailchimp/abc/extra") == "/webhooks/mailchimp/***/extra"
    assert loggable_path("/healthz") == "/healthz"

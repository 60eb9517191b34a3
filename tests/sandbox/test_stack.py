"""The multi-account sandbox stack: Mailchimp as before, or MailerLite with its test-only reads."""

import httpx2

from backend.sandbox.stack import build, mailerlite_key


def client_for(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://stack")


def test_mailchimp_is_the_default_and_seeds_as_before():
    app, seed = build(2, 1)
    assert [route.path for route in app.routes] == ["/kommo", "/mailchimp"]
    assert [list(spec) for spec in seed["accounts"]] == [[
        "account_id", "host", "subdomain", "access_token", "refresh_token", "expires_in",
        "api_key", "list_id", "leads"]] * 2


async def test_mailerlite_groups_per_account_window_and_reads():
    app, seed = build(2, 1, provider="mailerlite", esp_window=12)
    first, second = seed["accounts"]
    assert (first["provider"], first["api_key"], list(first["groups"])) == (
        "mailerlite", mailerlite_key(0), ["qualified", "proposal", "won"])
    groups = app.state.mailerlite.state.groups
    assert [groups[g]["name"] for g in second["groups"].values()] == [
        "Qualified 1", "Proposal 1", "Won 1"]
    assert app.state.mailerlite.state.window == 12
    auth = {"Authorization": f"Bearer {first['api_key']}"}
    async with client_for(app) as client:
        created = await client.post("/mailerlite/api/subscribers", headers=auth, json={
            "email": "Ann@Shop.io", "groups": [first["groups"]["won"]]})
        refused = await client.get("/mailerlite/api/groups", headers={"Authorization": "Bearer x"})
        subscribers = (await client.get("/mailerlite/_sandbox/subscribers")).json()
        answers = (await client.get("/mailerlite/_sandbox/answers")).json()
        logged = (await client.get("/mailerlite/_sandbox/requests")).json()
    assert (created.status_code, refused.status_code) == (201, 401)
    assert subscribers == {"subscribers": [
        {"email": "ann@shop.io", "status": "active", "groups": [first["groups"]["won"]]}]}
    assert answers == {"201": 1, "401": 1}  # the reads themselves are not counted
    assert logged == [
        {"method": "POST", "path": "/api/subscribers", "query": {}, "batch": False,
         "json": {"email": "Ann@Shop.io", "groups": [first["groups"]["won"]]}},
        {"method": "GET", "path": "/api/groups", "query": {}, "json": None, "batch": False}]

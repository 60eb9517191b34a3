"""After a whole run with real processes, no secret is anywhere in plaintext: not in the database
files, the logs, /metrics, /admin, the widget API's answers or its error bodies."""

import base64
from pathlib import Path

import httpx2
import pytest

from backend.sandbox.stack import PROPOSAL
from backend.settings import load_settings
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.stack import running_stack
from tests.e2e.test_multiprocess import drained
from tests.kommo.fixtures import widget_token

pytestmark = pytest.mark.slow
CLIENT_SECRET = "client-secret-under-test-5f0c2b9e7d41a8"
ADMIN_PASSWORD = "admin-password-under-test-93ad"


WRONG_KEYS = {"mailchimp": "0" * 31 + "f-us21", "mailerlite": "x" * 40}


def _answers(stack, env, provider) -> list[bytes]:
    """Every kind of answer an operator or the widget sees, errors included; connecting the
    platform again through the widget (MailerLite: a new webhook and its signing secret)."""
    spec = stack.seed["accounts"][0]
    settings = load_settings({**env, "PUBLIC_URL": stack.web_url}, dotenv=None)
    token = widget_token(settings, spec["account_id"], iss=f"https://{spec['host']}",
                         subdomain=spec["subdomain"])
    widget = {"X-Auth-Token": token}
    admin = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}
    seen = []
    with httpx2.Client(base_url=stack.web_url, timeout=30) as client:
        answers = [
            client.get("/metrics"), client.get("/admin", headers=admin), client.get("/readyz"),
            client.get("/api/widget/account", headers=widget),
            client.get("/api/widget/activity", headers=widget),
            client.get(f"/api/widget/contacts/{spec['leads'][0][1]}", headers=widget),
            client.put("/api/widget/provider", headers=widget, json={
                "kind": provider, "api_key": spec["api_key"], "list_id": spec.get("list_id")}),
            client.put("/api/widget/provider", headers=widget,  # refused by the platform
                       json={"kind": provider, "api_key": WRONG_KEYS[provider]}),
            client.get("/api/widget/account", headers={"X-Auth-Token": token + "x"}),
            client.post("/webhooks/kommo/not-a-hook", content=b"x"),
        ]
    for answer in answers:
        seen.append(answer.content + repr(dict(answer.headers)).encode())
    assert [a.status_code for a in answers[:7]] == [200] * 7, [a.text[:200] for a in answers]
    assert all(a.status_code >= 400 for a in answers[7:])
    return seen


def _webhook_secrets(stack, spec) -> dict[str, str]:
    """MailerLite's signing secrets of the webhooks mailsync registered (Mailchimp signs nothing)."""
    if "list_id" in spec:
        return {}
    answer = httpx2.get(f"{stack.sandbox_url}/mailerlite/api/webhooks",
                        headers={"Authorization": f"Bearer {spec['api_key']}"})
    hooks = answer.raise_for_status().json()["data"]
    assert hooks and all(h.get("secret") for h in hooks)
    return {f"webhook secret {h['id']}": h["secret"] for h in hooks}


@pytest.mark.parametrize("provider", ["mailchimp", "mailerlite"])
def test_no_secret_in_plaintext_after_a_run(tmp_path, provider):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/run.db"
    extra = {"ADMIN_PASSWORD": ADMIN_PASSWORD, "KOMMO_CLIENT_ID": "c0ffee00-client-id",
             "KOMMO_CLIENT_SECRET": CLIENT_SECRET}
    with running_stack(database_url, tmp_path, accounts=2, leads=3, workers=0,
                       embedded_worker=True, worker_env=extra, provider=provider) as stack:
        with httpx2.Client(timeout=30) as client:
            for spec in stack.seed["accounts"]:
                for lead_id, _, _ in spec["leads"]:
                    stack.move(spec["account_id"], lead_id, PROPOSAL, client)
        drained(database_url)
        env = {"DATABASE_URL": database_url, "ENV": "test", "SECRET_KEY": TEST_SECRET_KEY, **extra}
        answers = _answers(stack, env, provider)
        hook_secrets = _webhook_secrets(stack, stack.seed["accounts"][0])
    secrets = {"client secret": CLIENT_SECRET, "admin password": ADMIN_PASSWORD,
               "SECRET_KEY": env["SECRET_KEY"], **hook_secrets}
    for spec in stack.seed["accounts"]:
        n = spec["account_id"]
        secrets |= {f"access token {n}": spec["access_token"],
                    f"refresh token {n}": spec["refresh_token"], f"API key {n}": spec["api_key"]}
    places = {str(p.name): p.read_bytes() for p in Path(tmp_path).iterdir()
              if p.name.startswith("run.db") or p.suffix == ".log"}
    places |= {f"answer {n}": body for n, body in enumerate(answers)}
    assert {"run.db", "web.log"} <= set(places)
    leaks = [(what, where) for what, secret in secrets.items() for where, content in places.items()
             if secret.encode() in content]
    assert leaks == []

"""The simulated Kommo and Mailchimp behind one HTTP server, seeded with many accounts — for the
multi-process tests, the benchmarks and demos.

    python -m backend.sandbox.stack --port 9100 --accounts 20 --leads 10 --seed-out seed.json

serves Kommo under `/kommo` and Mailchimp under `/mailchimp` (point `KOMMO_API_BASE_URL` and
`MAILCHIMP_API_BASE_URL` there) and writes what it seeded (accounts, tokens, keys, leads) as
JSON. `seed_database` then installs those accounts in a mailsync database, maps their stages and
registers their Kommo webhooks, as an admin's install would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.sandbox.kommo import KommoSandbox
from backend.sandbox.kommo_store import PIPELINE_ID
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

FIRST_ACCOUNT = 30_000_001
QUALIFIED, PROPOSAL, WON, LOST = 67548607, 67548619, 142, 143
MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won", LOST: None}  # None: remove
TARGET = {QUALIFIED: {"qualified"}, PROPOSAL: {"proposal"}, WON: {"won"}, LOST: set()}


def mailchimp_key(n: int) -> str:
    return f"{n:032x}-us21"


def delayed(app: ASGIApp, seconds: float) -> ASGIApp:
    """Every request waits `seconds` first: a remote API's round trip."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and seconds:
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return wrapped


def build(accounts: int, leads: int, *, esp_latency: float = 0.0) -> tuple[Starlette, dict[str, Any]]:
    kommo = KommoSandbox(webhook_client=httpx2.AsyncClient(timeout=30))
    mailchimp = create_mailchimp_sandbox(api_keys=[mailchimp_key(n) for n in range(accounts)])
    seed = {"accounts": [_seed_account(kommo, mailchimp.state.sandbox, n, leads)
                         for n in range(accounts)]}
    app = Starlette(routes=[Mount("/kommo", app=kommo.app),
                            Mount("/mailchimp", app=delayed(mailchimp, esp_latency))])
    app.state.kommo, app.state.mailchimp = kommo, mailchimp.state.sandbox
    return app, seed


def _seed_account(kommo: KommoSandbox, mailchimp: Any, n: int, leads: int) -> dict[str, Any]:
    store = kommo.store
    account = store.add_account(FIRST_ACCOUNT + n, f"acct{n}", f"Account {n}")
    issued = store.token({"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
                          "grant_type": "authorization_code", "code": store.authorize(account.id)})
    audience = mailchimp.add_audience(f"Audience {n}")
    seeded = []
    for m in range(leads):
        email = f"person{m}.acct{n}@shop.io"
        contact = store.add_contact(account.id, f"Person {m}", emails=[email])
        lead = store.add_lead(account.id, status_id=QUALIFIED, contacts=[contact.id])
        seeded.append([lead.id, contact.id, email])
    return {"account_id": account.id, "host": account.host, "subdomain": account.subdomain,
            "access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
            "expires_in": issued["expires_in"], "api_key": mailchimp_key(n),
            "list_id": audience.id, "leads": seeded}


async def seed_database(environ: dict[str, str], seed: dict[str, Any], *, kommo_base: str,
                        public_url: str) -> None:
    """Install every seeded account: tokens, Mailchimp connection, stage mapping, and our Kommo
    webhook registered at the simulated Kommo (so its stage changes reach `public_url`)."""
    from datetime import timedelta

    from backend import db, repository
    from backend.models import EspConnection, MappingRule, utcnow
    from backend.repository import KommoTokens
    from backend.security import Vault, new_hook_key
    from backend.settings import Secret, load_settings

    settings = load_settings(environ, dotenv=None)  # the same keys as the processes it serves
    vault = Vault(settings.encryption_keys)
    engine = db.create_engine(settings.database_url)
    try:
        async with db.session_factory(engine)() as session, session.begin():
            hook_keys = {}
            for spec in seed["accounts"]:
                account = await repository.upsert_account(
                    session, spec["account_id"], host=spec["host"], subdomain=spec["subdomain"])
                hook_keys[account.id] = account.hook_key
                await repository.save_kommo_tokens(session, vault, account.id, KommoTokens(
                    Secret(spec["access_token"]), Secret(spec["refresh_token"]),
                    utcnow() + timedelta(seconds=spec["expires_in"])))
                await repository.save_esp_connection(session, EspConnection(
                    account_id=account.id, kind="mailchimp", label="Mailchimp",
                    api_key_enc=vault.encrypt(spec["api_key"]), list_id=spec["list_id"],
                    dc="us21", hook_key=new_hook_key()))
                await repository.replace_mapping(session, account.id, [
                    MappingRule(account_id=account.id, pipeline_id=PIPELINE_ID, status_id=stage,
                                action="segment" if tag else "remove", segment_id=tag)
                    for stage, tag in MAPPING.items()])
    finally:
        await engine.dispose()
    await _subscribe_webhooks(seed, hook_keys, kommo_base, public_url)


async def _subscribe_webhooks(seed: dict[str, Any], hook_keys: dict[int, str], kommo_base: str,
                              public_url: str) -> None:
    async with httpx2.AsyncClient(timeout=30) as client:
        for spec in seed["accounts"]:
            response = await client.post(
                f"{kommo_base}/api/v4/webhooks",
                headers={"Authorization": f"Bearer {spec['access_token']}"},
                json={"destination": f"{public_url}/webhooks/kommo/{hook_keys[spec['account_id']]}",
                      "settings": ["status_lead", "add_contact", "update_contact"]})
            response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--leads", type=int, default=10, help="leads (each with a contact) per account")
    parser.add_argument("--esp-latency-ms", type=float, default=0.0)
    parser.add_argument("--seed-out", type=Path, required=True)
    args = parser.parse_args()
    app, seed = build(args.accounts, args.leads, esp_latency=args.esp_latency_ms / 1000)
    args.seed_out.write_text(json.dumps(seed))
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""What `backend.sandbox.stack` seeds: accounts, leads and contacts at the simulated Kommo, an
audience (Mailchimp) or groups (MailerLite) per account at the simulated ESP, and then the same
accounts installed in a mailsync database with their stage mapping and Kommo webhooks.
"""

from __future__ import annotations

from typing import Any

import httpx2

from backend.sandbox.kommo import KommoSandbox
from backend.sandbox.kommo_store import PIPELINE_ID
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

FIRST_ACCOUNT = 30_000_001
QUALIFIED, PROPOSAL, WON, LOST = 67548607, 67548619, 142, 143
MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won", LOST: None}  # None: remove
TARGET = {QUALIFIED: {"qualified"}, PROPOSAL: {"proposal"}, WON: {"won"}, LOST: set()}
PROVIDERS = ("mailchimp", "mailerlite")


def mailchimp_key(n: int) -> str:
    return f"{n:032x}-us21"


def mailerlite_key(n: int) -> str:
    """Shaped like the new API's keys (a JWT), so mailsync never takes it for a Classic one."""
    return f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzYW5kYm94In0.c2FuZGJveC1{n:08d}"


def seed_account(kommo: KommoSandbox, esp: Any, provider: str, n: int, leads: int) -> dict[str, Any]:
    """Account n at Kommo (tokens, leads in Qualified with one contact each) and at the ESP."""
    store = kommo.store
    account = store.add_account(FIRST_ACCOUNT + n, f"acct{n}", f"Account {n}")
    issued = store.token({"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
                          "grant_type": "authorization_code", "code": store.authorize(account.id)})
    if provider == "mailchimp":
        esp_spec = {"api_key": mailchimp_key(n), "list_id": esp.add_audience(f"Audience {n}").id}
    else:  # the simulated MailerLite is one workspace: each account's groups carry its number
        esp_spec = {"provider": provider, "api_key": mailerlite_key(n),
                    "groups": {tag: esp.add_group(f"{tag.title()} {n}")
                               for tag in MAPPING.values() if tag}}
    seeded = []
    for m in range(leads):
        email = f"person{m}.acct{n}@shop.io"
        contact = store.add_contact(account.id, f"Person {m}", emails=[email])
        lead = store.add_lead(account.id, status_id=QUALIFIED, contacts=[contact.id])
        seeded.append([lead.id, contact.id, email])
    return {"account_id": account.id, "host": account.host, "subdomain": account.subdomain,
            "access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
            "expires_in": issued["expires_in"], **esp_spec, "leads": seeded}


async def seed_database(environ: dict[str, str], seed: dict[str, Any], *, kommo_base: str,
                        public_url: str) -> None:
    """Install every seeded account: tokens, ESP connection, stage mapping, and our Kommo
    webhook registered at the simulated Kommo (so its stage changes reach `public_url`)."""
    from datetime import timedelta

    from backend import db, repository
    from backend.models import MappingRule, utcnow
    from backend.repository import KommoTokens
    from backend.security import Vault
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
                await repository.save_esp_connection(session, _esp_connection(spec, vault))
                segments = spec.get("groups") or {tag: tag for tag in MAPPING.values() if tag}
                await repository.replace_mapping(session, account.id, [
                    MappingRule(account_id=account.id, pipeline_id=PIPELINE_ID, status_id=stage,
                                action="segment" if tag else "remove",
                                segment_id=segments[tag] if tag else None)
                    for stage, tag in MAPPING.items()])
    finally:
        await engine.dispose()
    await _subscribe_webhooks(seed, hook_keys, kommo_base, public_url)


def _esp_connection(spec: dict[str, Any], vault: Any) -> Any:
    from backend.models import EspConnection
    from backend.security import new_hook_key

    if spec.get("provider", "mailchimp") == "mailerlite":  # groups are global: no list, no dc
        return EspConnection(account_id=spec["account_id"], kind="mailerlite", label="MailerLite",
                             api_key_enc=vault.encrypt(spec["api_key"]), hook_key=new_hook_key())
    return EspConnection(account_id=spec["account_id"], kind="mailchimp", label="Mailchimp",
                         api_key_enc=vault.encrypt(spec["api_key"]), list_id=spec["list_id"],
                         dc="us21", hook_key=new_hook_key())


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

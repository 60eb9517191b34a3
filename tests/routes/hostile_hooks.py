"""Shared by the hostile-input tests (tests/routes/test_hostile_*.py): one installed Kommo account
and one connection per email platform webhook route, and a client that posts to them signed,
unsigned or forged, from a chosen address."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
from sqlmodel import select

from backend import repository
from backend.models import EspConnection, InboxEvent, Job

HOSTILE = Path(__file__).parents[1] / "fixtures" / "hostile"
KOMMO_ACCOUNT = 29085424
ML_SECRET = "yaEgW3JvHz"
CLASSIC_KEY = "0123456789abcdef0123456789abcdef"  # Classic signs with the account's API key
# route → (account id, connection kind, hook key); Kommo's key is the account's own.
ESP = {"mailerlite": (1, "mailerlite", "ml-hook-key"),
       "classic": (3, "mailerlite_classic", "classic-hook-key"),
       "mailchimp": (2, "mailchimp", "mc-hook-key")}
FAMILY = {"mailerlite": "mailerlite", "classic": "mailerlite", "mailchimp": "mailchimp"}


def sign(route: str, body: bytes) -> str:
    secret = CLASSIC_KEY if route == "classic" else ML_SECRET
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Hooks:
    client: httpx2.AsyncClient
    resources: object
    kommo_key: str

    def url(self, route: str, hook: str = "valid") -> str:
        family = "kommo" if route == "kommo" else FAMILY[route]
        key = self.kommo_key if route == "kommo" else ESP[route][2]
        if hook == "unknown":
            key = "no-such-hook-key-0000000000000000000000000"
        elif hook == "overlong":
            key = "k" * 5000
        elif hook == "wrong_family":
            family = "mailchimp" if family != "mailchimp" else "mailerlite"
        return f"/webhooks/{family}/{key}"

    async def post(self, route: str, body: bytes, *, signature: str = "signed", hook: str = "valid",
                   client: httpx2.AsyncClient | None = None) -> httpx2.Response:
        headers: dict[str, str | bytes] = {}
        if route in ("mailerlite", "classic"):
            header = "X-MailerLite-Signature" if route == "classic" else "Signature"
            value = {"signed": sign(route, body), "none": None, "forged": "0" * 64,
                     "non_ascii": "é☃".encode() + b"\xff" * 8,
                     "base64": base64.b64encode(bytes.fromhex(sign(route, body))).decode()
                     }[signature]
            if value is not None:
                headers[header] = value
        kind = "json" if route in ("mailerlite", "classic") else "x-www-form-urlencoded"
        headers["Content-Type"] = f"application/{kind}"
        return await (client or self.client).post(self.url(route, hook), content=body,
                                                  headers=headers)

    async def stored(self) -> tuple[list[InboxEvent], list[Job]]:
        async with self.resources.sessions() as session:
            return ((await session.exec(select(InboxEvent).order_by(InboxEvent.id))).all(),
                    (await session.exec(select(Job).order_by(Job.id))).all())


def client_at(app, address: str) -> httpx2.AsyncClient:
    """A client whose requests come from `address` (the failure limit counts per address)."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, client=(address, 40000)),
                              base_url="http://t")


@pytest.fixture
async def hooks(offline_app, offline_client) -> Hooks:
    resources = offline_app.state.resources
    async with resources.sessions() as session, session.begin():
        account = await repository.upsert_account(session, KOMMO_ACCOUNT, host="acme.kommo.com",
                                                  subdomain="acme")
        for account_id, kind, hook_key in ESP.values():
            await repository.upsert_account(session, account_id, host="a.kommo.com", subdomain="a")
            api_key = CLASSIC_KEY if kind == "mailerlite_classic" else "key"
            await repository.save_esp_connection(session, EspConnection(
                account_id=account_id, kind=kind, api_key_enc=resources.vault.encrypt(api_key),
                webhook_secret_enc=resources.vault.encrypt(ML_SECRET) if kind == "mailerlite" else None,
                list_id="a6b5da1054" if kind == "mailchimp" else None, hook_key=hook_key))
    return Hooks(offline_client, resources, account.hook_key)


def lead_items(count: int, *, first: int = 1000, account: int = KOMMO_ACCOUNT) -> str:
    """`count` realistic stage-change items (25 pairs each), brackets percent-encoded as Kommo
    sends them."""
    pairs = []
    for n in range(count):
        item = f"leads[status][{n}]"
        pairs += [f"{item}[id]={first + n}", f"{item}[status_id]=142", f"{item}[pipeline_id]=7654321",
                  f"{item}[old_status_id]=67548619", f"{item}[last_modified]=1732540000",
                  f"{item}[account_id]={account}", f"{item}[name]=Deal+%23{n}"]
        for field in range(6):
            pairs += [f"{item}[custom_fields][{field}][id]={field}",
                      f"{item}[custom_fields][{field}][name]=Field{field}",
                      f"{item}[custom_fields][{field}][values][0][value]=value{field}"]
    return "&".join(quote(pair, safe="=+%") for pair in pairs)

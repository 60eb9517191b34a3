"""Fixtures for everything that talks to the simulated Kommo: the sandbox in process, our app
sending every outbound call to it (recorded), and helpers to install an account through the
real callback route. tests/kommo/conftest.py exposes them; other test modules import them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from starlette.applications import Starlette

from backend import repository
from backend.app import create_app
from backend.models import utcnow
from backend.repository import KommoTokens
from backend.resources import Resources
from backend.sandbox.kommo import KommoSandbox
from backend.settings import Secret, Settings
from tests.conftest import make_settings

KOMMO_BASE = "http://kommo.test"
PUBLIC = "https://mailsync.test"
ACME, BETA = 29085424, 31000001


class Recorder(httpx2.AsyncBaseTransport):
    """Passes requests to `inner` (or answers 599 without one) and remembers each of them."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.inner = inner
        self.requests: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.inner is None:
            return httpx2.Response(599, text="no outbound call was expected")
        return await self.inner.handle_async_request(request)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


@pytest.fixture
def kommo() -> KommoSandbox:
    sandbox = KommoSandbox()
    sandbox.store.add_account(ACME, "acme", "Acme Corp")
    sandbox.store.add_account(BETA, "beta", "Beta Ltd")
    return sandbox


@pytest.fixture
def kommo_settings(database_url: str) -> Settings:
    return make_settings(database_url, KOMMO_API_BASE_URL=KOMMO_BASE)


@pytest.fixture
def outbound(kommo: KommoSandbox) -> Recorder:
    return Recorder(httpx2.ASGITransport(app=kommo.app))


@pytest.fixture
async def kommo_app(kommo_settings, engine, outbound, kommo) -> AsyncIterator[Starlette]:
    """Our app, every outbound call going to the sandbox; the sandbox's webhooks come back in."""
    async with httpx2.AsyncClient(transport=outbound) as http_client:
        app = create_app(kommo_settings, engine=engine, http_client=http_client)
        async with app.router.lifespan_context(app), _client(app) as hooks:
            kommo.webhook_client = hooks
            yield app


@pytest.fixture
def kommo_resources(kommo_app: Starlette) -> Resources:
    return kommo_app.state.resources


@pytest.fixture
async def web(kommo_app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    async with _client(kommo_app) as client:
        yield client


def _client(app: Starlette) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=PUBLIC)


async def install(web: httpx2.AsyncClient, kommo: KommoSandbox, account_id: int = ACME,
                  **params: str) -> httpx2.Response:
    """What Kommo does when an admin allows access: redirect the browser to our callback."""
    code = kommo.store.authorize(account_id)
    query = {"code": code, "referer": kommo.store.account(account_id).host, "from_widget": "1", **params}
    return await web.get("/oauth/kommo/callback", params=query)


async def stored_tokens(resources: Resources, account_id: int = ACME) -> KommoTokens | None:
    async with resources.sessions() as session:
        return await repository.get_kommo_tokens(session, resources.vault, account_id)


async def expire_stored_tokens(resources: Resources, account_id: int = ACME,
                               left: timedelta = timedelta(minutes=-1)) -> KommoTokens:
    """Make the stored access token (nearly) expired; the refresh token stays valid."""
    tokens = await stored_tokens(resources, account_id)
    assert tokens is not None
    changed = KommoTokens(tokens.access_token, tokens.refresh_token, utcnow() + left)
    async with resources.sessions() as session, session.begin():
        await repository.save_kommo_tokens(session, resources.vault, account_id, changed)
    return changed


async def seed_tokens(resources: Resources, kommo: KommoSandbox, account_id: int = ACME) -> KommoTokens:
    """An installed account without going through the route (no webhook, no recorded calls)."""
    issued = kommo.store.token({"client_id": resources.settings.client_id,
                                "client_secret": resources.settings.client_secret.reveal(),
                                "grant_type": "authorization_code",
                                "code": kommo.store.authorize(account_id)})
    account = kommo.store.account(account_id)
    tokens = KommoTokens(Secret(issued["access_token"]), Secret(issued["refresh_token"]),
                         utcnow() + timedelta(seconds=issued["expires_in"]))
    async with resources.sessions() as session, session.begin():
        await repository.upsert_account(session, account_id, host=account.host,
                                        subdomain=account.subdomain, name=account.name)
        await repository.save_kommo_tokens(session, resources.vault, account_id, tokens)
    return tokens


def widget_token(settings: Settings, account_id: int = ACME, *, secret: str | None = None,
                 now: int | None = None, **claims: object) -> str:
    issued = now if now is not None else int(utcnow().timestamp())
    body = {"iss": "https://acme.kommo.com", "aud": settings.public_origin, "jti": "6a1f",
            "iat": issued, "nbf": issued, "exp": issued + 1800, "account_id": account_id,
            "user_id": 8107561, "subdomain": "acme", "client_uuid": settings.client_id,
            "is_admin": True, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    key = OctKey.import_key(secret or settings.client_secret.reveal())
    return jwt.encode({"alg": "HS256"}, body, key, algorithms=["HS256"])

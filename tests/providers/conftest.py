from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette

from backend.providers.mailchimp.client import MailchimpProvider
from backend.providers.mailerlite.client import MailerLiteProvider
from backend.sandbox.mailchimp import SANDBOX_API_KEY as MC_KEY
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.sandbox.mailerlite import SANDBOX_API_KEY as ML_KEY
from backend.sandbox.mailerlite import create_mailerlite_sandbox

FIXTURES = Path(__file__).parent.parent / "fixtures"
ML_BASE = "http://mailerlite.sandbox/api"
MC_BASE = "http://mailchimp.sandbox/{dc}/3.0"


async def asgi_client(app: Starlette) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))


@pytest.fixture
async def mailerlite_app() -> AsyncIterator[Starlette]:
    yield create_mailerlite_sandbox()


@pytest.fixture
async def mailchimp_app() -> AsyncIterator[Starlette]:
    yield create_mailchimp_sandbox()


def mailerlite_provider(client: httpx2.AsyncClient, key: str = ML_KEY) -> MailerLiteProvider:
    return MailerLiteProvider(client, base_url=ML_BASE, api_key=key)


def mailchimp_provider(client: httpx2.AsyncClient, list_id: str | None,
                       key: str = MC_KEY) -> MailchimpProvider:
    return MailchimpProvider(client, base_url=MC_BASE, api_key=key, list_id=list_id)


@pytest.fixture
def resources_stub():
    """An EspConnection and just enough of `Resources` (a vault) for `read_webhook`."""
    from types import SimpleNamespace

    from backend.models import EspConnection
    from backend.security import Vault, new_fernet_key
    from backend.settings import Secret

    vault = Vault([Secret(new_fernet_key())])

    def make(kind: str, *, webhook_secret: str | None = None, classic: bool = False):
        connection = EspConnection(
            account_id=1, kind=kind, api_key_enc=vault.encrypt("key"), hook_key="h",
            classic=classic, webhook_secret_enc=vault.encrypt(webhook_secret) if webhook_secret
            else None)
        return connection, SimpleNamespace(vault=vault)

    return make

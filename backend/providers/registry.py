"""The registry of email platforms: register, get, all. Each provider class owns everything
about its platform — how it is built from a key or a stored connection, how its webhooks are
verified and read, its names — so adding a platform is one folder here plus one `register`.
"""

from __future__ import annotations

from typing import Any

from backend.errors import Unprocessable

_REGISTRY: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    _REGISTRY[cls.kind] = cls
    return cls


def get(kind: str) -> type[Any]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise Unprocessable(f"unknown email platform {kind!r}", code="invalid_provider") from None


def all() -> list[type[Any]]:
    return [_REGISTRY[kind] for kind in sorted(_REGISTRY)]


from backend.providers.mailchimp.client import MailchimpProvider  # noqa: E402
from backend.providers.mailerlite.classic import MailerLiteClassicProvider  # noqa: E402
from backend.providers.mailerlite.client import MailerLiteProvider  # noqa: E402

register(MailerLiteProvider)
register(MailerLiteClassicProvider)
register(MailchimpProvider)

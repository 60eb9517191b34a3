"""The simulated Mailchimp's audiences, the problem+json errors its handlers raise, and the base
the handler groups share."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.sandbox.mailchimp.app import MailchimpSandbox

OPTED_OUT = {"unsubscribed", "cleaned"}
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
FAKE_DOMAINS = frozenset({"example.com", "example.org", "example.net", "mailinator.com"})


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, errors: list | None = None) -> None:
        self.status = status
        self.body: dict[str, Any] = {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title,
            "status": status, "detail": detail, "instance": str(uuid.uuid4())}
        if errors:
            self.body["errors"] = errors


def md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class Audience:
    id: str
    name: str
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    merge_fields: list[dict[str, Any]] = field(default_factory=list)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)  # static segments = tags
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)


class Handlers:
    """Base of the API's handler groups, which all work on the sandbox's audiences."""

    def __init__(self, sandbox: MailchimpSandbox) -> None:
        self.sb = sandbox

    def _list(self, list_id: str) -> Audience:
        if list_id not in self.sb.audiences:
            raise Problem(404, "Resource Not Found",
                          "The requested resource could not be found.")
        return self.sb.audiences[list_id]

    def _member(self, audience: Audience, ident: str) -> dict[str, Any]:
        member = audience.members.get(ident) or audience.members.get(md5(ident))
        if member is None:
            raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
        return member

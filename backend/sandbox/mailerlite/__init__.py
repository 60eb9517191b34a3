"""Simulated MailerLite (new API under `/api`, a small Classic v2 under `/api/v2`).

A real Starlette app with in-memory state that answers in the shapes of the recorded exchanges
(`tests/fixtures/mailerlite/recordings/`) and MailerLite's API documentation: 201 new / 200 existing
upserts, unsubscribed/bounced/junk never reactivated (unless `resubscribe: true`), groups, fields
keyed by snake_case, `/batch` (≤ 50, dispatched through the same handlers), group import,
webhooks with secrets, 120 requests per window per key with 429 + `Retry-After`, and 5 imports
per window. Every request is logged (`sandbox.requests`) so tests can count calls.
`await sandbox.deliver(...)` POSTs signed webhook bodies to the registered URLs.
"""

from backend.sandbox.mailerlite.api import ROUTES, Api, dispatch
from backend.sandbox.mailerlite.app import (
    SANDBOX_API_KEY,
    SANDBOX_CLASSIC_KEY,
    MailerLiteSandbox,
    create_mailerlite_sandbox,
)
from backend.sandbox.mailerlite.classic import classic_dispatch
from backend.sandbox.mailerlite.pagination import cursor_page, page_of
from backend.sandbox.mailerlite.shapes import field_body, group_body, subscriber_body, webhook_body
from backend.sandbox.mailerlite.store import (
    BASE,
    DEFAULT_FIELDS,
    OPTED_OUT,
    STATUSES,
    Refusal,
    State,
    invalid,
    not_found,
    now_text,
)
from backend.sandbox.simulator import Answer, LoggedRequest

__all__ = [
    "BASE", "DEFAULT_FIELDS", "OPTED_OUT", "ROUTES", "SANDBOX_API_KEY", "SANDBOX_CLASSIC_KEY",
    "STATUSES", "Answer", "Api", "LoggedRequest", "MailerLiteSandbox", "Refusal", "State",
    "classic_dispatch", "create_mailerlite_sandbox", "cursor_page", "dispatch", "field_body",
    "group_body", "invalid", "not_found", "now_text", "page_of", "subscriber_body", "webhook_body",
]

"""Simulated Mailchimp Marketing API v3 (served under `/{dc}/3.0` and `/3.0`).

In-memory audiences, members keyed by md5(lower(email)), tags (= static segments), merge fields
(tags ≤ 10 characters, at most 30 per audience), batch subscribe (≤ 500), segment member
add/remove (≤ 500 each), audience webhooks (validated with a GET to the URL before they are
accepted) and problem+json errors: "Member In Compliance State", "Forgotten Email Not
Subscribed", "Invalid Resource" for fake-looking addresses. At most 10 simultaneous requests per
key (429 beyond), and an optional per-window request budget with 429 + `Retry-After`.
Every request is logged for tests; `await sandbox.deliver(...)` posts form-encoded webhooks.
"""

from backend.sandbox.mailchimp.api import ROUTES, Api, dispatch
from backend.sandbox.mailchimp.app import (
    SANDBOX_API_KEY,
    MailchimpSandbox,
    create_mailchimp_sandbox,
    problem_response,
)
from backend.sandbox.mailchimp.store import (
    FAKE_DOMAINS,
    OPTED_OUT,
    STATUSES,
    Audience,
    Problem,
    md5,
    stamp,
)
from backend.sandbox.simulator import Answer, LoggedRequest

__all__ = [
    "FAKE_DOMAINS", "OPTED_OUT", "ROUTES", "SANDBOX_API_KEY", "STATUSES", "Answer", "Api",
    "Audience", "LoggedRequest", "MailchimpSandbox", "Problem", "create_mailchimp_sandbox",
    "dispatch", "md5", "problem_response", "stamp",
]

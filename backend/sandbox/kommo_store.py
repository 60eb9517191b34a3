"""The simulated Kommo's state, in memory: accounts, pipelines, leads, contacts, notes, tags,
custom fields, webhooks, and OAuth codes and tokens with Kommo's rotation rules.

Objects render themselves in the two shapes Kommo uses: API v4 JSON and webhook items.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backend.sandbox import kommo_events
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

USER_ID = 8107561
CODE_LIFETIME = 20 * 60
ACCESS_LIFETIME = 86400
EMAIL_FIELD, PHONE_FIELD, BUDGET_FIELD = 771908, 771906, 1118164
EMAIL_ENUMS = {"WORK": 552488, "PRIV": 552490, "OTHER": 552492}
PHONE_ENUMS = {"WORK": 552486, "WORKDD": 552494, "MOB": 552496, "FAX": 552498, "HOME": 552500,
               "OTHER": 552502}
PIPELINE_ID = 7654321
STAGES = ((67548601, "Incoming leads", 1, "#c1c1c1"), (67548607, "Qualified", 0, "#99ccff"),
          (67548619, "Proposal", 0, "#ffcc66"), (142, "Closed - won", 0, "#CCFF66"),
          (143, "Closed - lost", 0, "#D5D8DB"))


class KommoProblem(Exception):
    """An error answer: problem+json with `title`, `type`, `status`, `detail` (and extras)."""

    def __init__(self, status: int, detail: str, *, title: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title, self.extra = status, detail, title, extra

    def body(self) -> dict[str, Any]:
        return {"title": self.title or _TITLES.get(self.status, "Error"),
                "type": f"https://httpstatus.es/{self.status}", "status": self.status,
                "detail": self.detail, **self.extra}


_TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
           429: "Too Many Requests"}


def oauth_refusal(hint: str) -> KommoProblem:
    # Kommo's token endpoint answers in Russian whatever the host (per Kommo's API documentation).
    problem = KommoProblem(400, "В запросе отсутствует ряд параметров или параметры невалидны",
                           title="Некорректный запрос", hint=hint)
    problem.extra["type"] = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
    return problem


@dataclass
class Contact:
    id: int
    name: str
    account_id: int
    created_at: int
    updated_at: int
    emails: list[tuple[str, str]] = field(default_factory=list)  # (value, enum code)
    phones: list[tuple[str, str]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "contact"  # or "company"
    company_id: int | None = None  # a contact's company (itself stored with kind "company")

    def fields_api(self) -> list[dict[str, Any]] | None:
        fields = [(PHONE_FIELD, "Phone", "PHONE", self.phones, PHONE_ENUMS),
                  (EMAIL_FIELD, "Email", "EMAIL", self.emails, EMAIL_ENUMS)]
        return [{"field_id": fid, "field_name": name, "field_code": code, "field_type": "multitext",
                 "values": [{"value": v, "enum_id": enums[kind], "enum_code": kind} for v, kind in values]}
                for fid, name, code, values, enums in fields if values] or None

    def fields_hook(self) -> list[dict[str, Any]]:
        fields = [(PHONE_FIELD, "Phone", "PHONE", self.phones, PHONE_ENUMS),
                  (EMAIL_FIELD, "Email", "EMAIL", self.emails, EMAIL_ENUMS)]
        return [{"id": fid, "name": name, "code": code,
                 "values": [{"value": v, "enum": enums[kind]} for v, kind in values]}
                for fid, name, code, values, enums in fields if values]


@dataclass
class Lead:
    id: int
    name: str
    account_id: int
    pipeline_id: int
    status_id: int
    created_at: int
    updated_at: int
    price: int = 0
    contacts: list[tuple[int, bool]] = field(default_factory=list)  # (contact id, is_main)
    fields: dict[int, str] = field(default_factory=dict)
    old_status_id: int = 0


@dataclass
class Account:
    id: int
    subdomain: str
    name: str
    pipelines: list[dict[str, Any]]
    custom_fields: dict[str, list[dict[str, Any]]]
    leads: dict[int, Lead] = field(default_factory=dict)
    contacts: dict[int, Contact] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_names: dict[str, int] = field(default_factory=dict)
    revoked: bool = False

    @property
    def host(self) -> str:
        return f"{self.subdomain}.kommo.com"

    def stage(self, pipeline_id: int, status_id: int) -> dict[str, Any]:
        for pipeline in self.pipelines:
            for status in pipeline["_embedded"]["statuses"] if pipeline["id"] == pipeline_id else ():
                if status["id"] == status_id:
                    return status
        raise KommoProblem(400, f"status {status_id} is not in pipeline {pipeline_id}")


@dataclass
class _Grant:
    account_id: int
    expires_at: float
    used: bool = False


class KommoStore:
    def __init__(self, *, client_id: str = SANDBOX_CLIENT_ID, client_secret: str = SANDBOX_CLIENT_SECRET,
                 redirect_uri: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.clock = clock
        self.accounts: dict[int, Account] = {}
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, int] = {}  # live refresh token → account
        self._ids = itertools.count(24870000)
        self.events = kommo_events.EventLog(lambda: self.clock())

    def now(self) -> int:
        return int(self.clock())

    def next_id(self) -> int:
        return next(self._ids)

    # --- accounts and OAuth -------------------------------------------------------------------

    def add_account(self, account_id: int = 29085424, subdomain: str = "acme", name: str = "") -> Account:
        statuses = [{"id": sid, "name": label, "sort": 10 * (n + 1), "is_editable": sid not in (142, 143),
                     "pipeline_id": PIPELINE_ID, "color": color, "type": kind, "account_id": account_id}
                    for n, (sid, label, kind, color) in enumerate(STAGES)]
        pipeline = {"id": PIPELINE_ID, "name": "Sales pipeline", "sort": 1, "is_main": True,
                    "is_unsorted_on": True, "is_archive": False, "account_id": account_id,
                    "_embedded": {"statuses": statuses}}
        fields = {"contacts": [
            {"id": PHONE_FIELD, "name": "Phone", "type": "multitext", "code": "PHONE"},
            {"id": EMAIL_FIELD, "name": "Email", "type": "multitext", "code": "EMAIL"}],
            "leads": [{"id": BUDGET_FIELD, "name": "Budget", "type": "numeric", "code": None}]}
        account = Account(id=account_id, subdomain=subdomain, name=name or subdomain.title(),
                          pipelines=[pipeline], custom_fields=fields)
        self.accounts[account_id] = account
        return account

    def authorize(self, account_id: int) -> str:
        """The admin clicked Allow: a code for the redirect (valid 20 minutes, single use)."""
        code = "def50200" + secrets.token_hex(24)
        self._codes[code] = _Grant(self.account(account_id).id, self.clock() + CODE_LIFETIME)
        return code

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("client_id") != self.client_id:
            raise oauth_refusal("Check the `client_id` parameter")
        if not secrets.compare_digest(form.get("client_secret", ""), self.client_secret):
            raise oauth_refusal("Check the `client_secret` parameter")
        if self.redirect_uri is not None and form.get("redirect_uri") != self.redirect_uri:
            raise oauth_refusal("Redirect URI is not associated with client")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._issue(self._use_code(form.get("code", "")))
        if grant_type == "refresh_token":
            return self._issue(self._use_refresh(form.get("refresh_token", "")), form["refresh_token"])
        raise oauth_refusal("Unsupported grant type")

    def _use_code(self, code: str) -> int:
        grant = self._codes.get(code)
        if grant is None:
            raise oauth_refusal("Cannot decrypt the authorization code")
        if grant.used:
            raise oauth_refusal("Authorization code has been revoked")
        if grant.expires_at < self.clock():
            raise oauth_refusal("Authorization code has expired")
        grant.used = True
        return grant.account_id

    def _use_refresh(self, token: str) -> int:
        account_id = self._refresh.get(token)
        if account_id is None or self.accounts[account_id].revoked:
            raise oauth_refusal("Invalid refresh token")
        return account_id

    def _issue(self, account_id: int, used_refresh: str | None = None) -> dict[str, Any]:
        # Rotation with grace: the refresh token just used stays live until its successor is
        # used; every older one dies now (per Kommo's API documentation).
        for token in [t for t, owner in self._refresh.items() if owner == account_id and t != used_refresh]:
            del self._refresh[token]
        access, refresh = "sbx-at-" + secrets.token_urlsafe(24), "sbx-rt-" + secrets.token_urlsafe(24)
        self._access[access] = _Grant(account_id, self.clock() + ACCESS_LIFETIME)
        self._refresh[refresh] = account_id
        return {"token_type": "Bearer", "expires_in": ACCESS_LIFETIME, "access_token": access,
                "refresh_token": refresh, "server_time": self.now()}

    def account_for_token(self, token: str) -> Account:
        grant = self._access.get(token)
        if grant is None or grant.expires_at < self.clock() or self.accounts[grant.account_id].revoked:
            raise KommoProblem(401, "Invalid user name or password")
        return self.accounts[grant.account_id]

    def account(self, account_id: int) -> Account:
        if account_id not in self.accounts:
            raise KommoProblem(404, f"no sandbox account {account_id}")
        return self.accounts[account_id]

    def expire_access_tokens(self, account_id: int) -> None:
        for grant in self._access.values():
            if grant.account_id == account_id:
                grant.expires_at = 0

    def revoke(self, account_id: int) -> None:
        """The admin disabled the integration: every token of the account stops working."""
        self.account(account_id).revoked = True

    # --- CRM objects ----------------------------------------------------------------------------

    def add_contact(self, account_id: int, name: str, *, emails: Iterable[str | tuple[str, str]] = (),
                    phones: Iterable[str | tuple[str, str]] = (), kind: str = "contact",
                    contact_id: int | None = None, company_id: int | None = None) -> Contact:
        now = self.now()
        contact = Contact(id=contact_id or self.next_id(), name=name, account_id=account_id,
                          created_at=now, updated_at=now, emails=_typed(emails), phones=_typed(phones),
                          kind=kind, company_id=company_id)
        self.account(account_id).contacts[contact.id] = contact
        self.events.record(account_id, f"{kind}_added", kind, contact.id, after=self.events.note_value())
        return contact

    def add_lead(self, account_id: int, name: str = "", *, pipeline_id: int = PIPELINE_ID,
                 status_id: int | None = None, contacts: Iterable[int] = (), price: int = 0,
                 fields: dict[int, str] | None = None, lead_id: int | None = None) -> Lead:
        account = self.account(account_id)
        status_id = status_id or account.pipelines[0]["_embedded"]["statuses"][0]["id"]
        account.stage(pipeline_id, status_id)
        now, lead_id = self.now(), lead_id or self.next_id()
        lead = Lead(id=lead_id, name=name or f"Deal #{lead_id}", account_id=account_id,
                    pipeline_id=pipeline_id, status_id=status_id, created_at=now, updated_at=now,
                    price=price, contacts=[(cid, n == 0) for n, cid in enumerate(contacts)],
                    fields=dict(fields or {}))
        account.leads[lead.id] = lead
        self.events.record(account_id, "lead_added", "lead", lead.id, after=self.events.note_value())
        return lead

    def move_lead(self, account_id: int, lead_id: int, status_id: int,
                  pipeline_id: int | None = None) -> Lead:
        lead = self.lead(account_id, lead_id)
        pipeline_id = pipeline_id or lead.pipeline_id
        self.account(account_id).stage(pipeline_id, status_id)
        before = kommo_events.status_value(lead.pipeline_id, lead.status_id)
        lead.old_status_id, lead.status_id, lead.pipeline_id = lead.status_id, status_id, pipeline_id
        lead.updated_at = self.now()
        self.events.record(account_id, "lead_status_changed", "lead", lead.id,
                           after=kommo_events.status_value(pipeline_id, status_id), before=before)
        return lead

    def lead(self, account_id: int, lead_id: int) -> Lead:
        lead = self.account(account_id).leads.get(lead_id)
        if lead is None:
            raise KommoProblem(404, f"lead {lead_id} not found")
        return lead

    def contact(self, account_id: int, contact_id: int) -> Contact:
        contact = self.account(account_id).contacts.get(contact_id)
        if contact is None:
            raise KommoProblem(404, f"contact {contact_id} not found")
        return contact

    def linked_leads(self, contact: Contact) -> list[int]:
        account = self.account(contact.account_id)
        return [lead.id for lead in account.leads.values() if any(c == contact.id for c, _ in lead.contacts)]

    def tag(self, account: Account, spec: dict[str, Any]) -> dict[str, Any]:
        """A tag by id (must exist) or by name (created on first use)."""
        if spec.get("id") is not None:
            for name, tag_id in account.tag_names.items():
                if tag_id == spec["id"]:
                    return {"id": tag_id, "name": name, "color": None}
            raise KommoProblem(400, f"tag {spec['id']} does not exist")
        name = str(spec.get("name") or "").strip()
        if not name:
            raise KommoProblem(400, "a tag needs an id or a name")
        tag_id = account.tag_names.setdefault(name, self.next_id())
        return {"id": tag_id, "name": name, "color": None}


def _typed(values: Iterable[str | tuple[str, str]]) -> list[tuple[str, str]]:
    return [(v, "WORK") if isinstance(v, str) else (v[0], v[1]) for v in values]

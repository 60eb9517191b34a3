"""Kommo API v4 for one account: typed calls, the per-account budget, status codes → errors.

Every call waits for the account's budget (7 requests/s shared by all processes), carries the
account's access token, and on a 401 refreshes once and retries once; a second 401 puts the
account in `needs_reauth`. A 429 pauses the account's budget for every process until Kommo's
`retry_after` (1 s doubling without one) and raises, so the job waits rather than retries.
204 means "nothing": lists come back empty, single reads as None.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import httpx2

from backend import http, repository
from backend.errors import UpstreamError, UpstreamNotFound, UpstreamUnauthorized
from backend.kommo import types
from backend.kommo.budget import budget_key, pause_after_429, wait_for_budget
from backend.kommo.oauth import api_base_url
from backend.kommo.tokens import AccountTokens, FixedToken
from backend.settings import Secret

if TYPE_CHECKING:
    from backend.resources import Resources

SERVICE = "kommo"
PAGE_LIMIT = 250  # Kommo's maximum per page
BATCH = 50  # Kommo recommends 50 or fewer entities per write (504 on too large a batch)


class TokenSource(Protocol):
    async def access_token(self) -> Secret: ...
    async def after_unauthorized(self, rejected: Secret) -> Secret: ...
    async def refused_again(self) -> None: ...


class KommoClient:
    def __init__(self, resources: Resources, account_id: int | None = None, *, host: str | None = None,
                 tokens: TokenSource | None = None) -> None:
        if account_id is None and (host is None or tokens is None):
            raise ValueError("a KommoClient needs an account id, or a host and a token")
        self._resources = resources
        self._account_id = account_id
        self._host = host
        self._tokens = tokens or AccountTokens(resources, account_id)  # type: ignore[arg-type]
        self._budget = budget_key(account_id, host)

    @classmethod
    def with_token(cls, resources: Resources, host: str, access_token: Secret) -> KommoClient:
        """For the install, before the account id is known."""
        return cls(resources, host=host, tokens=FixedToken(access_token))

    # --- account and pipelines --------------------------------------------------------------

    async def account(self) -> types.AccountInfo:
        return _read(types.account_info, await self._get("/api/v4/account"))

    async def pipelines(self) -> list[types.Pipeline]:
        body = await self._get("/api/v4/leads/pipelines")
        return [_read(types.pipeline, item) for item in types.embedded(body, "pipelines")]

    # --- leads ------------------------------------------------------------------------------

    async def lead(self, lead_id: int) -> types.Lead | None:
        """The lead with its contact references (`is_main`); None when it no longer exists."""
        body = await self._get_one(f"/api/v4/leads/{int(lead_id)}", params={"with": "contacts"})
        return None if body is None else _read(types.lead, body)

    async def leads(self, lead_ids: Iterable[int]) -> list[types.Lead]:
        """Leads by id with their contact references, `PAGE_LIMIT` per request; deleted ones are
        left out."""
        ids, found = sorted({int(i) for i in lead_ids}), []
        for start in range(0, len(ids), PAGE_LIMIT):
            params = [("filter[id][]", i) for i in ids[start:start + PAGE_LIMIT]]
            body = await self._get("/api/v4/leads", params=[*params, ("limit", PAGE_LIMIT),
                                                             ("with", "contacts")])
            found += [_read(types.lead, item) for item in types.embedded(body, "leads")]
        return found

    async def leads_page(self, page: int = 1, *, stages: Iterable[tuple[int, int]] = (),
                         limit: int = PAGE_LIMIT) -> types.LeadsPage:
        """One page of leads with contacts, optionally only those in the (pipeline, stage) pairs."""
        params: list[tuple[str, str | int]] = [("with", "contacts"), ("page", page), ("limit", limit)]
        for n, (pipeline_id, status_id) in enumerate(stages):
            params += [(f"filter[statuses][{n}][pipeline_id]", pipeline_id),
                       (f"filter[statuses][{n}][status_id]", status_id)]
        body = await self._get("/api/v4/leads", params=params)
        leads = tuple(_read(types.lead, item) for item in types.embedded(body, "leads"))
        return types.LeadsPage(leads=leads, page=page, has_next=_has_next(body, len(leads), limit))

    async def iter_leads(self, *, stages: Iterable[tuple[int, int]] = ()) -> AsyncIterator[types.Lead]:
        stages, page = list(stages), 1
        while True:
            result = await self.leads_page(page, stages=stages)
            for item in result.leads:
                yield item
            if not result.has_next:
                return
            page += 1

    # --- contacts ---------------------------------------------------------------------------

    async def contact(self, contact_id: int) -> types.Contact | None:
        body = await self._get_one(f"/api/v4/contacts/{int(contact_id)}", params={"with": "leads"})
        return None if body is None else _read(types.contact, body)

    async def contacts(self, contact_ids: Iterable[int]) -> list[types.Contact]:
        """Contacts by id, `PAGE_LIMIT` per request (`filter[id][]`); missing ones are left out."""
        ids, found = sorted({int(i) for i in contact_ids}), []
        for start in range(0, len(ids), PAGE_LIMIT):
            chunk = ids[start:start + PAGE_LIMIT]
            params = [("filter[id][]", i) for i in chunk] + [("limit", PAGE_LIMIT), ("with", "leads")]
            body = await self._get("/api/v4/contacts", params=params)
            found += [_read(types.contact, item) for item in types.embedded(body, "contacts")]
        return found

    async def companies(self, company_ids: Iterable[int]) -> list[types.Company]:
        """Companies by id, `PAGE_LIMIT` per request; missing ones are left out."""
        ids, found = sorted({int(i) for i in company_ids}), []
        for start in range(0, len(ids), PAGE_LIMIT):
            params = [("filter[id][]", i) for i in ids[start:start + PAGE_LIMIT]] + [("limit", PAGE_LIMIT)]
            body = await self._get("/api/v4/companies", params=params)
            found += [_read(types.company, item) for item in types.embedded(body, "companies")]
        return found

    async def find_contacts_by_email(self, email: str) -> list[types.Contact]:
        """Kommo's `query=` matches loosely; keep the contacts holding exactly this address."""
        wanted = email.strip().lower()
        body = await self._get("/api/v4/contacts",
                               params={"query": wanted, "limit": PAGE_LIMIT, "with": "leads"})
        found = [_read(types.contact, item) for item in types.embedded(body, "contacts")]
        return [c for c in found if any(str(v.value).strip().lower() == wanted for v in c.emails)]

    async def add_contact_tag(self, contact_id: int, name: str,
                              current: types.Contact | None = None) -> bool:
        """Attach a tag, keeping the others (a tag write replaces the whole list). False when the
        contact already had it, so nothing was written. `current`: the contact just read, to
        save reading it again."""
        current = current if current is not None and current.id == contact_id \
            else await self.contact(contact_id)
        if current is None:
            raise UpstreamNotFound(f"contact {contact_id} does not exist", service=SERVICE, status=404)
        if any(tag.name.lower() == name.lower() for tag in current.tags):
            return False
        kept = [{"id": t.id} if t.id is not None else {"name": t.name} for t in current.tags]
        await self._request("PATCH", f"/api/v4/contacts/{int(contact_id)}",
                            json={"_embedded": {"tags": [*kept, {"name": name}]}})
        return True

    # --- notes ------------------------------------------------------------------------------

    async def add_notes(self, entity_type: str, notes: Sequence[types.NewNote]) -> list[int]:
        """Batch-add notes to `leads`, `contacts` or `companies`; returns the new note ids."""
        if entity_type not in ("leads", "contacts", "companies", "customers"):
            raise ValueError(f"notes cannot be added to {entity_type!r}")
        ids: list[int] = []
        for start in range(0, len(notes), BATCH):
            body = await self._request("POST", f"/api/v4/{entity_type}/notes",
                                       json=[note.to_json() for note in notes[start:start + BATCH]])
            ids += [i for item in types.embedded(body, "notes") if (i := types.as_int(item.get("id")))]
        return ids

    async def note_texts(self, entity_type: str, entity_ids: Sequence[int],
                         note_type: str = "service_message") -> set[tuple[int, str]]:
        """(entity id, text) of the notes of that type already on these entities."""
        found: set[tuple[int, str]] = set()
        for start in range(0, len(entity_ids), PAGE_LIMIT):
            ids = [("filter[entity_id][]", i) for i in entity_ids[start:start + PAGE_LIMIT]]
            page = 1
            while True:
                body = await self._get(f"/api/v4/{entity_type}/notes", params=[
                    *ids, ("filter[note_type][]", note_type), ("page", page), ("limit", PAGE_LIMIT)])
                items = types.embedded(body, "notes")
                found |= {(types.as_int(n.get("entity_id")) or 0, str((n.get("params") or {}).get("text")))
                          for n in items}
                if not _has_next(body, len(items), PAGE_LIMIT):
                    break
                page += 1
        return found

    # --- custom fields ----------------------------------------------------------------------

    async def custom_fields(self, entity_type: str = "contacts") -> list[types.CustomField]:
        fields, page = [], 1
        while True:
            body = await self._get(f"/api/v4/{entity_type}/custom_fields",
                                   params={"page": page, "limit": PAGE_LIMIT})
            items = types.embedded(body, "custom_fields")
            fields += [_read(types.custom_field, item) for item in items]
            if not _has_next(body, len(items), PAGE_LIMIT):
                return fields
            page += 1

    async def create_custom_field(self, name: str, field_type: str, *, entity_type: str = "contacts",
                                  code: str | None = None) -> types.CustomField:
        field: dict[str, Any] = {"name": name, "type": field_type}
        if code is not None:
            field["code"] = code
        body = await self._request("POST", f"/api/v4/{entity_type}/custom_fields", json=[field])
        created = types.embedded(body, "custom_fields") or ([body] if isinstance(body, dict) else [])
        if not created:
            raise UpstreamError("Kommo did not return the created field", code="unexpected_answer",
                                service=SERVICE)
        return _read(types.custom_field, created[0])

    # --- webhooks ---------------------------------------------------------------------------

    async def webhooks(self, destination: str | None = None) -> list[types.Webhook]:
        params = {"filter[destination]": destination} if destination else None
        body = await self._get("/api/v4/webhooks", params=params)
        found = [types.webhook(item) for item in types.embedded(body, "webhooks")]
        return [w for w in found if destination is None or w.destination == destination]

    async def add_webhook(self, destination: str, settings: Sequence[str], *, sort: int = 10
                          ) -> types.Webhook:
        body = await self._request("POST", "/api/v4/webhooks", json={
            "destination": destination, "settings": list(settings), "sort": sort})
        return types.webhook(body if isinstance(body, dict) else {"destination": destination})

    async def delete_webhook(self, destination: str) -> None:
        await self._request("DELETE", "/api/v4/webhooks", json={"destination": destination})

    # --- transport --------------------------------------------------------------------------

    async def _get(self, path: str, *, params: Any = None) -> Any:
        return await self._request("GET", path, params=params)

    async def _get_one(self, path: str, *, params: Any = None) -> Any:
        try:
            return await self._request("GET", path, params=params)
        except UpstreamNotFound:
            return None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        token = await self._tokens.access_token()
        response = await self._send(method, path, token, **kwargs)
        if response.status_code == 401:
            token = await self._tokens.after_unauthorized(token)
            response = await self._send(method, path, token, **kwargs)
            if response.status_code == 401:
                await self._tokens.refused_again()
                raise UpstreamUnauthorized("Kommo refused a freshly refreshed token",
                                           code="needs_reauth", service=SERVICE, status=401)
        if response.status_code == 204 or (response.is_success and not response.content):
            return None
        if not response.is_success:
            error = _error(response)
            if response.status_code == 429:
                error.retry_after = await pause_after_429(self._resources, self._budget,
                                                          error.retry_after)
            raise error
        try:
            return response.json()
        except ValueError:
            raise UpstreamError("Kommo answered with something that is not JSON",
                                code="unexpected_answer", service=SERVICE) from None

    async def _send(self, method: str, path: str, token: Secret, **kwargs: Any) -> httpx2.Response:
        await wait_for_budget(self._resources, self._budget)
        headers = {"Authorization": f"Bearer {token.reveal()}",
                   "X-Client-UUID": self._resources.settings.client_id}
        return await http.send(self._resources.http, method, f"{await self._base_url()}{path}",
                               service=SERVICE, headers=headers, **kwargs)

    async def _base_url(self) -> str:
        if self._host is None:
            async with self._resources.sessions() as session:
                account = await repository.get_account(session, self._account_id)  # type: ignore[arg-type]
            if account is None:
                raise UpstreamUnauthorized("this account is not installed", code="not_installed",
                                           service=SERVICE)
            self._host = account.host
        return api_base_url(self._resources.settings, self._host)


def _read(parse: Any, body: Any) -> Any:
    try:
        return parse(body)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UpstreamError(f"Kommo answered in an unexpected shape: {exc}",
                            code="unexpected_answer", service=SERVICE) from None


def _has_next(body: Any, count: int, limit: int) -> bool:
    links = body.get("_links") if isinstance(body, dict) else None
    if isinstance(links, dict) and "next" in links:
        return True
    # Without `_links` (UNVERIFIED shape), a full page may have a successor.
    return links is None and count >= limit


def _error(response: httpx2.Response) -> UpstreamError:
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    detail = body.get("detail") or body.get("title") or body.get("hint") or ""
    error = http.error_for(response, service=SERVICE,
                           message=f"Kommo answered {response.status_code}: {detail}".rstrip(": "))
    if error.retry_after is None:
        error.retry_after = _seconds(body.get("retry_after"))
    return error


def _seconds(value: Any) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None

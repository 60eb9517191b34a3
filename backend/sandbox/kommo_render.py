"""The simulated Kommo's answers: API v4 JSON (HAL, `_embedded`, `_links`, 204 when empty) and
webhook bodies in the wire format of the reference captures (tests/fixtures/kommo)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request

from backend.sandbox.kommo_store import USER_ID, Account, Contact, KommoProblem, KommoStore, Lead

MAX_LIMIT = 250
NOTE_TYPES = {"common", "service_message", "extended_service_message", "call_in", "call_out",
              "sms_in", "sms_out", "geolocation", "attachment"}


def _href(account: Account, path: str) -> dict[str, dict[str, str]]:
    return {"self": {"href": f"https://{account.host}{path}"}}


def _page(params: dict[str, str], default_limit: int = 50) -> tuple[int, int]:
    try:
        page, limit = int(params.get("page", 1)), int(params.get("limit", default_limit))
    except ValueError:
        raise KommoProblem(400, "page and limit must be numbers") from None
    if limit > MAX_LIMIT:
        raise KommoProblem(422, f"Limit {MAX_LIMIT} per page")
    return max(page, 1), max(limit, 1)


def _paged(account: Account, path: str, key: str, items: list[Any], params: dict[str, str],
           default_limit: int = 50, render: Any = None) -> dict[str, Any] | None:
    """One page of `items`; `render` turns only that page's items into JSON (a big account's
    other pages cost nothing)."""
    page, limit = _page(params, default_limit)
    chunk = items[(page - 1) * limit: page * limit]
    chunk = [render(item) for item in chunk] if render else chunk
    if not chunk:
        return None  # Kommo answers an empty list with 204 No Content
    links = _href(account, f"{path}?page={page}&limit={limit}")
    if page * limit < len(items):
        links["next"] = {"href": f"https://{account.host}{path}?page={page + 1}&limit={limit}"}
    return {"_page": page, "_links": links, "_embedded": {key: chunk}}


# --- account and pipelines ----------------------------------------------------------------------


def account_json(request: Request, account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "subdomain": account.subdomain,
            "current_user_id": USER_ID, "country": "US", "currency": "USD", "currency_symbol": "$",
            "is_unsorted_on": True, "is_loss_reason_enabled": False, "is_technical_account": True,
            "contact_name_display_order": 1, "_links": _href(account, "/api/v4/account")}


def pipelines_json(request: Request, account: Account) -> dict[str, Any]:
    pipelines = [p | {"_links": _href(account, f"/api/v4/leads/pipelines/{p['id']}")}
                 for p in account.pipelines]
    return {"_total_items": len(pipelines), "_links": _href(account, "/api/v4/leads/pipelines"),
            "_embedded": {"pipelines": pipelines}}


# --- leads --------------------------------------------------------------------------------------


def lead_json(store: KommoStore, lead: Lead, with_contacts: bool) -> dict[str, Any]:
    account = store.account(lead.account_id)
    fields = [{"field_id": fid, "field_name": _field_name(account, "leads", fid), "field_code": None,
               "field_type": "numeric", "values": [{"value": value}]} for fid, value in lead.fields.items()]
    body: dict[str, Any] = {
        "id": lead.id, "name": lead.name, "price": lead.price, "responsible_user_id": USER_ID,
        "group_id": 0, "status_id": lead.status_id, "pipeline_id": lead.pipeline_id,
        "loss_reason_id": None, "created_by": USER_ID, "updated_by": USER_ID,
        "created_at": lead.created_at, "updated_at": lead.updated_at, "closed_at": None,
        "closest_task_at": None, "is_deleted": False, "custom_fields_values": fields or None,
        "score": None, "account_id": lead.account_id, "labor_cost": None,
        "_links": _href(account, f"/api/v4/leads/{lead.id}"),
        "_embedded": {"tags": [], "companies": []}}
    if with_contacts:
        body["_embedded"]["contacts"] = [
            {"id": cid, "is_main": is_main, "_links": _href(account, f"/api/v4/contacts/{cid}")}
            for cid, is_main in lead.contacts]
    return body


def leads_list(store: KommoStore, account: Account, query: list[tuple[str, str]]) -> dict[str, Any] | None:
    params = dict(query)
    stages = _stage_filter(params)
    ids = {int(v) for k, v in query if k.startswith("filter[id]") and v.isdigit()}
    leads = [lead for lead in account.leads.values()
             if (not stages or (lead.pipeline_id, lead.status_id) in stages)
             and (not ids or lead.id in ids)]
    with_contacts = "contacts" in params.get("with", "")
    return _paged(account, "/api/v4/leads", "leads", leads, params,
                  render=lambda lead: lead_json(store, lead, with_contacts))


def _stage_filter(params: dict[str, str]) -> set[tuple[int, int]]:
    stages, n = set(), 0
    while f"filter[statuses][{n}][status_id]" in params:
        try:
            stages.add((int(params[f"filter[statuses][{n}][pipeline_id]"]),
                        int(params[f"filter[statuses][{n}][status_id]"])))
        except (KeyError, ValueError):
            raise KommoProblem(400, "filter[statuses] needs pipeline_id and status_id") from None
        n += 1
    return stages


# --- contacts -----------------------------------------------------------------------------------


def contact_json(store: KommoStore, contact: Contact, with_leads: bool,
                 linked: list[int] | None = None) -> dict[str, Any]:
    account = store.account(contact.account_id)
    first, _, last = contact.name.partition(" ")
    body: dict[str, Any] = {
        "id": contact.id, "name": contact.name, "first_name": first, "last_name": last,
        "responsible_user_id": USER_ID, "group_id": 0, "created_by": USER_ID, "updated_by": USER_ID,
        "created_at": contact.created_at, "updated_at": contact.updated_at, "closest_task_at": None,
        "is_deleted": False, "is_unsorted": False, "custom_fields_values": contact.fields_api(),
        "account_id": contact.account_id, "_links": _href(account, f"/api/v4/contacts/{contact.id}"),
        "_embedded": {"tags": list(contact.tags), "companies": [
            {"id": contact.company_id, "_links": _href(account, f"/api/v4/companies/{contact.company_id}")}
        ] if contact.company_id else []}}
    if with_leads:
        body["_embedded"]["leads"] = [{"id": lid, "_links": _href(account, f"/api/v4/leads/{lid}")}
                                      for lid in (store.linked_leads(contact) if linked is None
                                                  else linked)]
    return body


def contacts_list(store: KommoStore, account: Account, query: list[tuple[str, str]]) -> dict[str, Any] | None:
    ids = {int(v) for k, v in query if k.startswith("filter[id]") and v.isdigit()}
    params = dict(query)
    text = params.get("query", "").strip().lower()
    found = [c for c in account.contacts.values()
             if (not ids or c.id in ids) and (not text or text in _searchable(c))]
    with_leads = "leads" in params.get("with", "")
    linked: dict[int, list[int]] = {}
    for lead in account.leads.values() if with_leads else ():
        for contact_id, _main in lead.contacts:
            linked.setdefault(contact_id, []).append(lead.id)
    return _paged(account, "/api/v4/contacts", "contacts", found, params,
                  render=lambda c: contact_json(store, c, with_leads, linked.get(c.id, [])))


def company_json(store: KommoStore, company: Contact) -> dict[str, Any]:
    account = store.account(company.account_id)
    return {"id": company.id, "name": company.name, "responsible_user_id": USER_ID, "group_id": 0,
            "created_by": USER_ID, "updated_by": USER_ID, "created_at": company.created_at,
            "updated_at": company.updated_at, "closest_task_at": None, "is_deleted": False,
            "custom_fields_values": company.fields_api(), "account_id": company.account_id,
            "_links": _href(account, f"/api/v4/companies/{company.id}"), "_embedded": {"tags": []}}


def companies_list(store: KommoStore, account: Account,
                   query: list[tuple[str, str]]) -> dict[str, Any] | None:
    ids = {int(v) for k, v in query if k.startswith("filter[id]") and v.isdigit()}
    found = [c for c in account.contacts.values() if c.kind == "company" and (not ids or c.id in ids)]
    return _paged(account, "/api/v4/companies", "companies", [company_json(store, c) for c in found],
                  dict(query))


def _searchable(contact: Contact) -> str:
    # Kommo's `query` matches filled field values loosely (substrings), not exact addresses.
    return " ".join([contact.name, *(v for v, _ in contact.emails), *(v for v, _ in contact.phones)]).lower()


def patch_contact(store: KommoStore, account: Account, contact: Contact, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise KommoProblem(400, "the body must be a contact object")
    if isinstance(body.get("name"), str):
        contact.name = body["name"]
    embedded = body.get("_embedded")
    if isinstance(embedded, dict) and "tags" in embedded:
        # Tag writes replace the list; null detaches them all (per Kommo's API documentation).
        contact.tags = [store.tag(account, spec) for spec in embedded["tags"] or []]
    contact.updated_at = store.now()
    return {"id": contact.id, "updated_at": contact.updated_at,
            "_links": _href(account, f"/api/v4/contacts/{contact.id}")}


# --- notes, custom fields, webhooks -------------------------------------------------------------


def add_notes(store: KommoStore, account: Account, entity: str, body: Any) -> dict[str, Any]:
    targets = {"leads": account.leads, "contacts": account.contacts}
    if entity not in targets:
        raise KommoProblem(404, f"notes cannot be added to {entity}")
    if not isinstance(body, list) or not body:
        raise KommoProblem(400, "the body must be a non-empty array of notes")
    created = []
    for n, note in enumerate(body):
        entity_id = note.get("entity_id") if isinstance(note, dict) else None
        if entity_id not in targets[entity] or note.get("note_type") not in NOTE_TYPES:
            raise KommoProblem(400, "Request validation failed", **{"validation-errors": [
                {"request_id": str(n), "errors": [{"code": "NotSupportedChoice", "path": "entity_id",
                                                   "detail": "The entity or note type is not valid"}]}]})
        stored = {"id": store.next_id(), "entity_type": entity, **note, "created_at": store.now()}
        account.notes.append(stored)
        created.append({"id": stored["id"], "entity_id": entity_id,
                        "request_id": str(note.get("request_id", n))})
    return {"_total_items": len(created), "_embedded": {"notes": created}}


def notes_list(account: Account, entity: str, query: list[tuple[str, str]]) -> dict[str, Any] | None:
    """`filter[entity_id][]` and `filter[note_type][]`, as Kommo filters notes."""
    ids = {int(v) for k, v in query if k.startswith("filter[entity_id]") and v.isdigit()}
    kinds = {v for k, v in query if k.startswith("filter[note_type]")}
    found = [n for n in account.notes if n["entity_type"] == entity
             and (not ids or n["entity_id"] in ids) and (not kinds or n["note_type"] in kinds)]
    return _paged(account, f"/api/v4/{entity}/notes", "notes", found, dict(query))


def custom_fields_list(account: Account, entity: str, params: QueryParams) -> dict[str, Any] | None:
    fields = [field | {"entity_type": entity} for field in account.custom_fields.get(entity, [])]
    return _paged(account, f"/api/v4/{entity}/custom_fields", "custom_fields", fields, dict(params))


def add_custom_fields(store: KommoStore, account: Account, entity: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, list) or not all(isinstance(f, dict) and f.get("name") and f.get("type")
                                             for f in body):
        raise KommoProblem(400, "each field needs a name and a type")
    created = [{"id": store.next_id(), "name": f["name"], "type": f["type"], "code": f.get("code"),
                "is_api_only": bool(f.get("is_api_only", False))} for f in body]
    account.custom_fields.setdefault(entity, []).extend(created)
    return {"_total_items": len(created),
            "_embedded": {"custom_fields": [f | {"entity_type": entity} for f in created]}}


def _field_name(account: Account, entity: str, field_id: int) -> str:
    return next((f["name"] for f in account.custom_fields.get(entity, []) if f["id"] == field_id), "")


def webhooks_list(account: Account, destination: str | None) -> dict[str, Any] | None:
    hooks = [h for h in account.webhooks.values() if destination is None or h["destination"] == destination]
    if not hooks:
        return None
    return {"_total_items": len(hooks), "_links": _href(account, "/api/v4/webhooks"),
            "_embedded": {"webhooks": hooks}}


def add_webhook(store: KommoStore, account: Account, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not body.get("destination") or not body.get("settings"):
        raise KommoProblem(400, "destination and settings are required")
    existing = account.webhooks.get(body["destination"])
    # Subscribing an existing destination again updates it (and enables it again).
    hook = {"id": existing["id"] if existing else store.next_id(), "destination": body["destination"],
            "created_at": existing["created_at"] if existing else store.now(), "updated_at": store.now(),
            "account_id": account.id, "created_by": USER_ID, "sort": int(body.get("sort", 10)),
            "disabled": False, "settings": [str(s) for s in body["settings"]]}
    account.webhooks[hook["destination"]] = hook
    return hook


# --- webhook bodies -----------------------------------------------------------------------------


def lead_hook(store: KommoStore, lead: Lead) -> dict[str, Any]:
    account = store.account(lead.account_id)
    item: dict[str, Any] = {
        "id": lead.id, "name": lead.name, "status_id": lead.status_id, "old_status_id": lead.old_status_id,
        "price": lead.price, "responsible_user_id": USER_ID, "last_modified": lead.updated_at,
        "modified_user_id": USER_ID, "created_user_id": USER_ID, "date_create": lead.created_at,
        "pipeline_id": lead.pipeline_id, "account_id": lead.account_id}
    if lead.fields:
        item["custom_fields"] = [{"id": fid, "name": _field_name(account, "leads", fid),
                                  "values": [{"value": value}]} for fid, value in lead.fields.items()]
    return item | {"created_at": lead.created_at, "updated_at": lead.updated_at}


def lead_deleted_hook(lead: Lead) -> dict[str, Any]:
    return {"id": lead.id, "status_id": lead.status_id, "pipeline_id": lead.pipeline_id}


def contact_hook(store: KommoStore, contact: Contact) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": contact.id, "name": contact.name, "responsible_user_id": USER_ID,
        "date_create": contact.created_at, "last_modified": contact.updated_at,
        "created_user_id": USER_ID, "modified_user_id": USER_ID, "account_id": contact.account_id}
    if fields := contact.fields_hook():
        item["custom_fields"] = fields
    item |= {"created_at": contact.created_at, "updated_at": contact.updated_at, "type": contact.kind}
    if leads := store.linked_leads(contact):
        item["linked_leads_id"] = {str(lid): {"ID": lid} for lid in leads}
    return item


def contact_deleted_hook(contact: Contact) -> dict[str, Any]:
    return {"id": contact.id, "type": contact.kind}


def setting_name(entity: str, action: str, items: list[dict[str, Any]]) -> str:
    """The subscription `settings` value a wire key answers to (per Kommo's API documentation)."""
    kind = "lead" if entity == "leads" else ("company" if items and items[0].get("type") == "company"
                                             else "contact")
    return f"{action}_{kind}"


def webhook_body(account: Account, entity: str, action: str, items: list[dict[str, Any]]) -> str:
    pairs = [*_flatten(f"{entity}[{action}]", items),
             *_flatten("account", {"subdomain": account.subdomain, "id": account.id,
                                   "_links": {"self": f"https://{account.host}"}})]
    return form_body(pairs)


def form_body(pairs: Iterable[tuple[str, str]]) -> str:
    """Percent-encoded like PHP's `http_build_query` (brackets too), as the reference bodies are."""
    return urlencode(list(pairs))


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _flatten(f"{prefix}[{key}]", child)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _flatten(f"{prefix}[{index}]", child)
    elif value is not None:
        yield prefix, str(value)

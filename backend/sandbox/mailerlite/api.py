"""The new API's route table and dispatch, shared by HTTP requests and `/batch` items."""

from __future__ import annotations

from typing import Any

from backend.sandbox.mailerlite.fields import Fields
from backend.sandbox.mailerlite.imports import Imports
from backend.sandbox.mailerlite.store import Refusal
from backend.sandbox.mailerlite.webhooks import Webhooks
from backend.sandbox.simulator import Answer, compile_routes, find_route


class Api(Imports, Fields, Webhooks):
    """The new API's behaviour, independent of HTTP so `/batch` can dispatch to it."""


ROUTES = compile_routes([
    ("GET", "subscribers", "count_or_list"), ("POST", "subscribers", "upsert"),
    ("GET", r"subscribers/import/([^/]+)", "get_import"),
    ("POST", r"subscribers/([^/]+)/forget", "forget"),
    ("POST", r"subscribers/([^/]+)/groups/([^/]+)", "assign"),
    ("DELETE", r"subscribers/([^/]+)/groups/([^/]+)", "unassign"),
    ("GET", r"subscribers/([^/]+)", "get_subscriber"),
    ("PUT", r"subscribers/([^/]+)", "update_subscriber"),
    ("DELETE", r"subscribers/([^/]+)", "delete_subscriber"),
    ("GET", "groups", "list_groups"), ("POST", "groups", "create_group"),
    ("GET", r"groups/([^/]+)/subscribers", "group_subscribers"),
    ("POST", r"groups/([^/]+)/import-subscribers", "import_to_group"),
    ("PUT", r"groups/([^/]+)", "update_group"), ("DELETE", r"groups/([^/]+)", "delete_group"),
    ("GET", "fields", "list_fields"), ("POST", "fields", "create_field"),
    ("PUT", r"fields/([^/]+)", "update_field"), ("DELETE", r"fields/([^/]+)", "delete_field"),
    ("GET", "webhooks", "list_webhooks"), ("POST", "webhooks", "create_webhook"),
    ("GET", r"webhooks/([^/]+)", "get_webhook"), ("PUT", r"webhooks/([^/]+)", "update_webhook"),
    ("DELETE", r"webhooks/([^/]+)", "delete_webhook"),
])


def dispatch(api: Api, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
    """`path` without the `api/` prefix. Unknown routes answer like Laravel does."""
    found = find_route(ROUTES, method, path)
    if found is None:
        return 404, {"message": f"The route api/{path} could not be found."}
    handler, groups = found
    try:
        return getattr(api, handler)(*groups, query, body)
    except Refusal as refusal:
        return refusal.status, refusal.body

"""The Marketing API's route table and dispatch."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.sandbox.mailchimp.audiences import Audiences
from backend.sandbox.mailchimp.batch import BatchSubscribe
from backend.sandbox.mailchimp.merge_fields import MergeFields
from backend.sandbox.mailchimp.segments import Segments
from backend.sandbox.mailchimp.store import Problem
from backend.sandbox.mailchimp.webhooks import Webhooks
from backend.sandbox.simulator import Answer, compile_routes, find_route


class Api(Audiences, MergeFields, Segments, BatchSubscribe, Webhooks):
    """Every handler, named by `ROUTES`; each group above owns one noun of the API."""


ROUTES = compile_routes([
    ("GET", "ping", "ping"), ("GET", "lists", "lists"),
    ("GET", r"lists/([^/]+)", "get_list"), ("POST", r"lists/([^/]+)", "batch"),
    ("GET", r"lists/([^/]+)/members", "list_members"),
    ("GET", r"lists/([^/]+)/members/([^/]+)", "get_member"),
    ("PUT", r"lists/([^/]+)/members/([^/]+)", "put_member"),
    ("PATCH", r"lists/([^/]+)/members/([^/]+)", "patch_member"),
    ("DELETE", r"lists/([^/]+)/members/([^/]+)", "archive_member"),
    ("POST", r"lists/([^/]+)/members/([^/]+)/actions/delete-permanent", "delete_permanent"),
    ("GET", r"lists/([^/]+)/members/([^/]+)/tags", "member_tags"),
    ("POST", r"lists/([^/]+)/members/([^/]+)/tags", "set_tags"),
    ("GET", r"lists/([^/]+)/merge-fields", "merge_fields"),
    ("POST", r"lists/([^/]+)/merge-fields", "add_merge_field"),
    ("GET", r"lists/([^/]+)/segments", "segments"),
    ("POST", r"lists/([^/]+)/segments", "add_segment"),
    ("POST", r"lists/([^/]+)/segments/([^/]+)", "segment_members"),
    ("GET", r"lists/([^/]+)/tag-search", "tag_search"),
    ("GET", r"lists/([^/]+)/webhooks", "webhooks"),
    ("POST", r"lists/([^/]+)/webhooks", "add_webhook"),
    ("DELETE", r"lists/([^/]+)/webhooks/([^/]+)", "delete_webhook"),
])


async def dispatch(api: Api, method: str, path: str, query: dict, body: Any) -> Answer:
    found = find_route(ROUTES, method, path)
    if found is None:
        return 404, Problem(404, "Resource Not Found", "Invalid path").body
    handler, groups = found
    try:
        answer = getattr(api, handler)(*groups, query, body)
        return await answer if asyncio.iscoroutine(answer) else answer
    except Problem as problem:
        return problem.status, problem.body

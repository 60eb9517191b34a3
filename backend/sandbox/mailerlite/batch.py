"""`POST /batch`: up to 50 requests, each dispatched through the same handlers as over HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx2

from backend.sandbox.mailerlite.api import Api, dispatch
from backend.sandbox.mailerlite.store import State
from backend.sandbox.simulator import Answer, LoggedRequest


def run_batch(state: State, api: Api, key: str, body: Any) -> Answer:
    requests = (body or {}).get("requests")
    problems = _batch_problems(requests)
    if problems:
        return 422, {"message": next(iter(problems.values()))[0], "errors": problems}
    imports = all(r["method"] == "POST" and r["path"] == "api/subscribers" for r in requests)
    if imports and state.take("import", key, state.import_limit)[0] < 0:
        return 429, {"message": "You're being rate limited on import creation."}
    responses = [_one(state, api, key, r) for r in requests]
    ok = sum(1 for r in responses if r["code"] < 400)
    return 200, {"total": len(responses), "successful": ok, "failed": len(responses) - ok,
                 "responses": responses}


def _one(state: State, api: Api, key: str, item: dict[str, Any]) -> dict[str, Any]:
    rel, _, raw_query = item["path"].removeprefix("api/").partition("?")
    rel = unquote(rel)
    query = dict(httpx2.QueryParams(raw_query))
    state.requests.append(LoggedRequest(item["method"], f"/api/{rel}", query,
                                        item.get("body"), key, batch=True))
    code, answer = dispatch(api, item["method"], rel, query, item.get("body"))
    return {"code": code, "body": answer}


def _batch_problems(requests: Any) -> dict[str, list[str]]:
    if not isinstance(requests, list) or not requests:
        return {"requests": ["The requests field is required."]}
    if len(requests) > 50:
        return {"requests": ["The requests may not have more than 50 items."]}
    problems: dict[str, list[str]] = {}
    for index, item in enumerate(requests):
        if not isinstance(item, dict) or item.get("method") not in (
                "GET", "POST", "PUT", "DELETE", "PATCH"):
            problems[f"requests.{index}.method"] = [f"The selected requests.{index}.method is invalid."]
        elif not str(item.get("path", "")).startswith("api/") or "webhooks" in str(item["path"]):
            problems[f"requests.{index}.path"] = [f"The selected requests.{index}.path is invalid."]
    return problems

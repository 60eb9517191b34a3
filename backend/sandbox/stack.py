"""The simulated Kommo and one simulated ESP (Mailchimp or MailerLite) behind one HTTP server,
seeded with many accounts — for the multi-process tests, the benchmarks and demos.

    python -m backend.sandbox.stack --port 9100 --accounts 20 --leads 10 --seed-out seed.json
    python -m backend.sandbox.stack ... --provider mailerlite --esp-window 12

serves Kommo under `/kommo` and Mailchimp under `/mailchimp` (point `KOMMO_API_BASE_URL` and
`MAILCHIMP_API_BASE_URL` there), or MailerLite under `/mailerlite` (`MAILERLITE_API_BASE_URL` is
`/mailerlite/api`; 120 requests and 5 imports per `--esp-window` seconds per key), and writes
what it seeded (accounts, tokens, keys, leads, MailerLite group ids) as JSON. `seed_database`
then installs those accounts in a mailsync database, maps their stages and registers their Kommo
webhooks, as an admin's install would. For MailerLite, `/mailerlite/_sandbox/subscribers` (every
subscriber's status and group ids), `/mailerlite/_sandbox/answers` (how many answers of each HTTP
status it gave) and `/mailerlite/_sandbox/requests` (its request log) read its state without
spending any key's request budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.sandbox.kommo import KommoSandbox
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.sandbox.mailerlite import create_mailerlite_sandbox
from backend.sandbox.stack_seed import (
    FIRST_ACCOUNT,
    LOST,
    MAPPING,
    PROPOSAL,
    PROVIDERS,
    QUALIFIED,
    TARGET,
    WON,
    mailchimp_key,
    mailerlite_key,
    seed_account,
    seed_database,
)

__all__ = ["FIRST_ACCOUNT", "LOST", "MAPPING", "PROPOSAL", "PROVIDERS", "QUALIFIED", "TARGET",
           "WON", "build", "delayed", "mailchimp_key", "mailerlite_key", "seed_database"]


def delayed(app: ASGIApp, seconds: float) -> ASGIApp:
    """Every request waits `seconds` first: a remote API's round trip."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and seconds:
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return wrapped


def counted(app: ASGIApp, answers: Counter[int]) -> ASGIApp:
    """Counts the answers by HTTP status: benchmarks tell the calls served from the 429s."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answers[message["status"]] += 1
            await send(message)

        await app(scope, receive, sending if scope["type"] == "http" else send)

    return wrapped


def unmounted(app: ASGIApp) -> ASGIApp:
    """The app sees its paths from its mount point on (the simulated MailerLite reads the URL's
    path, `/api/...`, which under `Mount("/mailerlite")` would still carry the prefix)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if scope["type"] == "http" and root and scope["path"].startswith(root):
            scope = {**scope, "path": scope["path"][len(root):], "root_path": ""}
        await app(scope, receive, send)

    return wrapped


def build(accounts: int, leads: int, *, esp_latency: float = 0.0, provider: str = "mailchimp",
          esp_window: float = 60.0) -> tuple[Starlette, dict[str, Any]]:
    kommo = KommoSandbox(webhook_client=httpx2.AsyncClient(timeout=30))
    if provider == "mailchimp":
        esp_app = create_mailchimp_sandbox(api_keys=[mailchimp_key(n) for n in range(accounts)])
    else:
        esp_app = create_mailerlite_sandbox(api_keys=[mailerlite_key(n) for n in range(accounts)],
                                            window=esp_window)
    esp = esp_app.state.sandbox
    seed = {"accounts": [seed_account(kommo, esp, provider, n, leads) for n in range(accounts)]}
    if provider == "mailchimp":
        app = Starlette(routes=[Mount("/kommo", app=kommo.app),
                                Mount("/mailchimp", app=delayed(esp_app, esp_latency))])
        app.state.kommo, app.state.mailchimp = kommo, esp
        return app, seed
    answers: Counter[int] = Counter()
    app = Starlette(routes=[*_mailerlite_reads(esp, answers), Mount("/kommo", app=kommo.app),
                            Mount("/mailerlite", app=counted(
                                delayed(unmounted(esp_app), esp_latency), answers))])
    app.state.kommo, app.state.mailerlite = kommo, esp
    return app, seed


def _mailerlite_reads(esp: Any, answers: Counter[int]) -> list[Route]:
    """Test-only reads of the simulated MailerLite; not part of its API, not counted."""

    async def subscribers(request: Request) -> JSONResponse:
        state = esp.state
        return JSONResponse({"subscribers": [
            {"email": sub["email"], "status": sub["status"], "groups": state.memberships[ident]}
            for ident, sub in state.subscribers.items()]})

    async def answered(request: Request) -> JSONResponse:
        return JSONResponse({str(status): count for status, count in sorted(answers.items())})

    async def requests(request: Request) -> JSONResponse:  # keys left out
        return JSONResponse([{"method": r.method, "path": r.path, "query": r.query, "json": r.json,
                              "batch": r.batch} for r in esp.requests])

    return [Route("/mailerlite/_sandbox/subscribers", subscribers, methods=["GET"]),
            Route("/mailerlite/_sandbox/answers", answered, methods=["GET"]),
            Route("/mailerlite/_sandbox/requests", requests, methods=["GET"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--leads", type=int, default=10, help="leads (each with a contact) per account")
    parser.add_argument("--esp-latency-ms", type=float, default=0.0)
    parser.add_argument("--provider", choices=PROVIDERS, default="mailchimp")
    parser.add_argument("--esp-window", type=float, default=60.0,
                        help="MailerLite's rate window in seconds (120 requests, 5 imports per key)")
    parser.add_argument("--seed-out", type=Path, required=True)
    args = parser.parse_args()
    app, seed = build(args.accounts, args.leads, esp_latency=args.esp_latency_ms / 1000,
                      provider=args.provider, esp_window=args.esp_window)
    args.seed_out.write_text(json.dumps(seed))
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""`mailsync` commands (docs/ARCHITECTURE.md §5)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backend import db, migrations, overview, repository, widget_archive
from backend.errors import MailsyncError
from backend.logs import configure_logging
from backend.models import Account, AccountStatus, Backfill, utcnow
from backend.security import Vault, new_fernet_key
from backend.settings import Settings, load_settings
from backend.usage import Usage

log = logging.getLogger("mailsync.cli")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        settings = load_settings()
        return args.handler(settings, args)
    except MailsyncError as exc:
        print(f"mailsync: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailsync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="migrate, then run the web server (and a worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="web only (scale-out)")
    serve.set_defaults(handler=cmd_serve)
    sandbox = commands.add_parser(
        "sandbox", help="try mailsync: backend + simulated Kommo, MailerLite and Mailchimp + demo")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8000)
    sandbox.set_defaults(handler=cmd_sandbox)
    commands.add_parser("worker", help="run a job worker").set_defaults(handler=cmd_worker)
    commands.add_parser("migrate", help="bring the database to head").set_defaults(
        handler=cmd_migrate)
    accounts = commands.add_parser("accounts", help="list accounts with token health")
    accounts.add_argument("--json", action="store_true", help="one JSON object per line")
    accounts.set_defaults(handler=cmd_accounts)
    rotate = commands.add_parser("rotate-keys", help="re-encrypt every secret with the newest key")
    rotate.add_argument("--new-key", action="store_true",
                        help="only print a new key to put first in ENCRYPTION_KEYS")
    rotate.set_defaults(handler=cmd_rotate_keys)
    widget = commands.add_parser("widget", help="the Kommo widget archive").add_subparsers(
        dest="widget_command", required=True, metavar="ACTION")
    build = widget.add_parser("build", help="check the widget, then write the zip to upload to Kommo")
    build.add_argument("--out", type=Path, default=Path("widget.zip"), help="default: ./widget.zip")
    build.add_argument("--source", type=Path,
                       help="folder holding manifest.json and widget/ (default: the installed copy)")
    build.set_defaults(handler=cmd_widget_build)
    return parser


def _with_engine(
    settings: Settings, body: Callable[[Any], Coroutine[Any, Any, int]]
) -> int:
    async def run() -> int:
        engine = db.create_engine(settings.database_url)
        try:
            return await body(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def body(engine: Any) -> int:
        await migrations.upgrade(engine)
        current, _ = await migrations.current_and_head(engine)
        print(f"database at revision {current}")
        return 0

    return _with_engine(settings, body)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from backend.app import create_app

    cmd_migrate(settings, args)
    app = create_app(settings, run_worker=not args.no_worker)
    # Fewer, cheaper collections: what start-up allocated is never collected, and the young
    # generation is collected every 50,000 allocations instead of every 700 (a webhook burst
    # otherwise pays for frequent full-heap scans in its tail latency).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True,
                server_header=False)
    return 0


def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> int:
    from backend.sandbox import server

    return server.run(os.environ, args.host, args.port)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from backend.resources import open_resources
    from backend.sync.handlers import BATCH_HANDLERS, HANDLERS
    from backend.worker import Worker

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_resources(settings) as resources:
            await Worker(resources, concurrency=settings.worker_concurrency,
                         handlers=HANDLERS, batch_handlers=BATCH_HANDLERS).run(stop)
        return 0

    return asyncio.run(run())


def cmd_accounts(settings: Settings, args: argparse.Namespace) -> int:
    async def body(engine: Any) -> int:
        async with db.session_factory(engine)() as session:
            accounts = await repository.list_all_accounts(session)
            views = await overview.load(session, [a.id for a in accounts], utcnow())
            rows = [await _account_row(session, a, views[a.id]) for a in accounts]
        _print_accounts(rows, as_json=args.json)
        return 0

    return _with_engine(settings, body)


async def _account_row(session: Any, account: Account, view: overview.AccountOverview) -> dict:
    token = await repository.get_kommo_token_row(session, account.id)
    esp = await repository.get_esp_connection(session, account.id)
    stats = await repository.account_stats(session, account.id)
    return {
        "account_id": account.id, "host": account.host, "status": account.status,
        "token": _token_health(token.expires_at if token else None),
        "token_expires_at": _iso(token.expires_at) if token else None,
        "token_refreshed_at": _iso(token.refreshed_at) if token else None,
        "needs_reauth": account.status == AccountStatus.NEEDS_REAUTH,
        "esp": esp.kind if esp else None,
        "pending_jobs": stats.pending_jobs, "dead_jobs": stats.failed_jobs,
        "calls_this_hour": _usage(view.this_hour), "calls_previous_hour": _usage(view.previous_hour),
        "backfill": _backfill(view.backfill)}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _usage(by_vendor: dict[str, Usage]) -> dict[str, dict[str, int]]:
    return {vendor: {"calls": use.calls, "rate_limited": use.rate_limited}
            for vendor, use in sorted(by_vendor.items())}


def _backfill(run: Backfill | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"state": run.state, "dry_run": run.dry_run, "done": run.done, "total": run.total,
            "started_at": _iso(run.started_at)}


def _cell(column: str, value: Any) -> str:
    """The table's words for the nested values the JSON lines carry as objects."""
    if value is None:
        return "-"
    if column.startswith("calls_"):
        return ", ".join(f"{vendor} {use['calls']}" + (f" ({use['rate_limited']}×429)"
                                                        if use["rate_limited"] else "")
                         for vendor, use in value.items()) or "-"
    if column == "backfill":
        preview = " preview" if value["dry_run"] else ""
        return f"{value['state']}{preview} {value['done']}/{value['total']}"
    return str(value)


def _token_health(expires_at: datetime | None) -> str:
    if expires_at is None:
        return "missing"
    seconds = (expires_at - utcnow()).total_seconds()
    return "expired" if seconds <= 0 else f"valid {int(seconds // 60)} min"


def _print_accounts(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    if not rows:
        print("no accounts installed")
        return
    columns = list(rows[0])
    cells = [[_cell(c, row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


def cmd_rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    if args.new_key:
        print(new_fernet_key())
        return 0

    async def body(engine: Any) -> int:
        vault = Vault(settings.encryption_keys)
        async with db.session_factory(engine)() as session, session.begin():
            count = await repository.rotate_encrypted_secrets(session, vault)
        print(f"re-encrypted {count} secrets with the newest key")
        return 0

    return _with_engine(settings, body)


def cmd_widget_build(settings: Settings, args: argparse.Namespace) -> int:
    out = args.out / "widget.zip" if args.out.is_dir() else args.out
    built = widget_archive.build(out, settings.public_url, args.source)
    print(f"{built.path.resolve()}  {built.size:,} bytes, {len(built.files)} files, "
          f"BACKEND_URL {settings.public_url.rstrip('/')}")
    url = urlsplit(settings.public_url)
    if url.scheme != "https" and url.hostname not in ("127.0.0.1", "localhost"):
        # Kommo's pages are https: browsers block the widget's calls to a plain-http backend.
        print(f"mailsync: warning: PUBLIC_URL {settings.public_url} is not https; the widget will not "
              "reach it from Kommo", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

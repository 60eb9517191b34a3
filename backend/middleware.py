"""Pure ASGI middleware: request context + access log, and the request body limit."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import logs, metrics
from backend.errors import PayloadTooLarge

log = logging.getLogger("mailsync.access")

MAX_BODY_BYTES = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Webhook URLs carry a secret key; it must never reach a log line.
_HOOK_PATH = re.compile(r"^(/webhooks/[a-z]+/)[^/]+")


def loggable_path(path: str) -> str:
    return _HOOK_PATH.sub(r"\1***", path)


class RequestContextMiddleware:
    """Gives every request an id (`X-Request-ID`, echoed back) and writes one JSON access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        request_token = logs.request_id_var.set(request_id)
        account_token = logs.account_id_var.set(None)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.HTTP_REQUESTS.labels(scope["method"], str(status)).inc()
            log.info("%s %s %s", scope["method"], loggable_path(scope["path"]), status, extra={
                "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
            logs.account_id_var.reset(account_token)
            logs.request_id_var.reset(request_token)


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413: at once when Content-Length says so, otherwise
    as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_too_large(send, self.max_bytes)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(_too_large_message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def _too_large_message(limit: int) -> str:
    return f"request body is larger than {limit // 1024} KiB"


async def _send_too_large(send: Send, limit: int) -> None:
    payload = json.dumps(PayloadTooLarge(_too_large_message(limit)).to_body()).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})

"""The sandbox's only way out: an HTTP transport that reaches this process on 127.0.0.1 and
nothing else.

Every client of the sandbox (the backend's outbound client, the simulated Kommo's and ESPs'
webhook senders, Mailchimp's URL validator) goes through it. A URL on the public origin (where
webhooks are registered, `PUBLIC_URL`) is rewritten to the loopback origin the process listens on,
so a sandbox behind a tunnel still talks to itself directly; any other host is refused, so a
sandbox can never call the real Kommo, MailerLite or Mailchimp.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2


class LeavingTheSandbox(httpx2.TransportError):
    """A request for a host that is not this sandbox."""


def origin_of(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


class LoopbackTransport(httpx2.AsyncBaseTransport):
    def __init__(self, internal_url: str, public_url: str,
                 inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.internal = origin_of(internal_url)
        self.public = origin_of(public_url)
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        here = (url.scheme, (url.host or "").lower(), url.port or (443 if url.scheme == "https" else 80))
        if here == self.public and here != self.internal:
            scheme, host, port = self.internal
            request.url = url.copy_with(scheme=scheme, host=host, port=port)
            request.headers["Host"] = f"{host}:{port}"
        elif here != self.internal:
            raise LeavingTheSandbox(f"the sandbox only talks to itself, not to {url.host}", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def loopback_client(internal_url: str, public_url: str, **kwargs) -> httpx2.AsyncClient:
    kwargs.setdefault("timeout", 30.0)
    return httpx2.AsyncClient(transport=LoopbackTransport(internal_url, public_url), **kwargs)

"""The shared outbound HTTP client and the edge where remote status codes become our errors."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC
from typing import Any

import httpx2

from backend import circuit, errors, metrics, usage

USER_AGENT = "mailsync/0.1 (+https://github.com/mailsync)"
TIMEOUT = httpx2.Timeout(15.0, connect=5.0)


def build_client(**kwargs: Any) -> httpx2.AsyncClient:
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("limits", httpx2.Limits(max_connections=200, max_keepalive_connections=50))
    return httpx2.AsyncClient(
        headers={"User-Agent": USER_AGENT}, follow_redirects=False, **kwargs)


async def send(
    client: httpx2.AsyncClient, method: str, url: str, *, service: str, **kwargs: Any
) -> httpx2.Response:
    """One outbound call, counted and seen by the running job's circuit (`circuit.observe`);
    transport failures become `UpstreamUnavailable`."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx2.TimeoutException as exc:
        metrics.OUTBOUND_ERRORS.labels(service, "timeout").inc()
        circuit.observe(service, None)
        raise errors.UpstreamUnavailable(f"{service} timed out", service=service) from exc
    except httpx2.TransportError as exc:
        metrics.OUTBOUND_ERRORS.labels(service, "transport").inc()
        circuit.observe(service, None)
        raise errors.UpstreamUnavailable(
            f"{service} could not be reached: {type(exc).__name__}", service=service) from exc
    metrics.OUTBOUND_CALLS.labels(service, str(response.status_code)).inc()
    usage.record(client, service, response.status_code)
    circuit.observe(service, response.status_code)
    return response


_BY_STATUS: dict[int, type[errors.UpstreamError]] = {
    401: errors.UpstreamUnauthorized,
    402: errors.UpstreamForbidden,
    403: errors.UpstreamForbidden,
    404: errors.UpstreamNotFound,
    429: errors.UpstreamRateLimited,
}


def error_for(response: httpx2.Response, *, service: str, message: str = "") -> errors.UpstreamError:
    """Map a failed response to the exception tree; providers refine with vendor details."""
    status = response.status_code
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = errors.UpstreamUnavailable if status >= 500 else errors.PermanentRefusal
    metrics.OUTBOUND_ERRORS.labels(service, str(status)).inc()
    return cls(message or f"{service} answered {status}", service=service, status=status,
               retry_after=retry_after_seconds(response))


def retry_after_seconds(response: httpx2.Response) -> float | None:
    """`Retry-After` as seconds or an HTTP date; absent or unreadable → None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())

"""The OAuth building blocks: referer check, disconnect signature, token exchange and refresh on
the wire (Authlib through our shared client), Kommo's refusals."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qsl

import httpx2
import pytest

from backend.errors import BadRequest, UpstreamError, UpstreamRateLimited, UpstreamUnavailable
from backend.kommo import oauth
from backend.settings import Secret
from tests.conftest import make_settings


@pytest.mark.parametrize("referer", [
    "acme.kommo.com", "ACME.Kommo.com", "acme.amocrm.com", "acme.amocrm.ru", "a-b.kommo.com",
    "api-c.kommo.com", "x.y.kommo.com",
])
def test_kommo_hosts_are_accepted(referer):
    assert oauth.validate_referer(referer) == referer.lower()


@pytest.mark.parametrize("referer", [
    None, "", "kommo.com", "https://acme.kommo.com", "acme.kommo.com:443", "acme.kommo.com/path",
    "acme.kommo.com.evil.io", "evil.io", "acme.kommo.com@evil.io", "evil.io#acme.kommo.com",
    "acme.kommo.com.", "-acme.kommo.com", "acme..kommo.com", "acme.kommo.co", "acme.amocrm.de",
    "acme kommo.com", "127.0.0.1", "[::1]", "acme.kommo.com?x=1", "a" * 250 + ".kommo.com",
])
def test_other_referers_are_refused(referer):
    with pytest.raises(BadRequest) as refused:
        oauth.validate_referer(referer)
    assert refused.value.code == "invalid_referer"


SETTINGS = make_settings("sqlite+aiosqlite:///unused.db", KOMMO_CLIENT_ID="client-uuid-1",
                         KOMMO_CLIENT_SECRET="the-client-secret")


def sign(account_id, secret="the-client-secret", client_id="client-uuid-1"):
    return hmac.new(secret.encode(), f"{client_id}|{account_id}".encode(), hashlib.sha256).hexdigest()


def test_disconnect_signature():
    ok = oauth.disconnect_signature_ok
    assert ok(SETTINGS, client_uuid="client-uuid-1", account_id="32720107", signature=sign(32720107))
    assert ok(SETTINGS, client_uuid="client-uuid-1", account_id="32720107",
              signature=sign(32720107).upper())
    assert not ok(SETTINGS, client_uuid="client-uuid-1", account_id="32720108", signature=sign(32720107))
    assert not ok(SETTINGS, client_uuid="client-uuid-1", account_id="32720107",
                  signature=sign(32720107, secret="another"))
    assert not ok(SETTINGS, client_uuid="other-client", account_id="32720107", signature=sign(32720107))
    assert not ok(SETTINGS, client_uuid="client-uuid-1", account_id="32720107", signature="")


class TokenEndpoint:
    """A token endpoint on a MockTransport, remembering what was posted."""

    def __init__(self, status=200, body=None):
        self.status, self.body, self.posted = status, body, []

    def __call__(self, request):
        self.posted.append((str(request.url), request.headers, dict(parse_qsl(request.content.decode()))))
        body = self.body if self.body is not None else {
            "token_type": "Bearer", "expires_in": 86400, "access_token": "at-1",
            "refresh_token": "rt-1", "server_time": 1}
        return httpx2.Response(self.status, json=body)


def resources_with(endpoint, **env):
    settings = make_settings("sqlite+aiosqlite:///unused.db", KOMMO_CLIENT_ID="client-uuid-1",
                             KOMMO_CLIENT_SECRET="the-client-secret", **env)
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(endpoint))
    return SimpleNamespace(settings=settings, http=client)


async def test_code_exchange_posts_the_keys_in_the_body_to_the_account_host():
    endpoint = TokenEndpoint()
    resources = resources_with(endpoint)
    before = datetime.now(UTC)
    tokens = await oauth.exchange_code(resources, "acme.kommo.com", "the-code")
    after = datetime.now(UTC)
    assert (tokens.access_token, tokens.refresh_token) == (Secret("at-1"), Secret("rt-1"))
    assert before + timedelta(seconds=86400) <= tokens.expires_at <= after + timedelta(seconds=86400)
    [(url, headers, form)] = endpoint.posted
    assert url == "https://acme.kommo.com/oauth2/access_token"
    assert form == {"grant_type": "authorization_code", "code": "the-code",
                    "redirect_uri": "https://mailsync.test/oauth/kommo/callback",
                    "client_id": "client-uuid-1", "client_secret": "the-client-secret"}
    assert "authorization" not in headers
    assert headers["user-agent"].startswith("mailsync/")
    await resources.http.aclose()


async def test_refresh_sends_redirect_uri_and_goes_to_the_base_url_when_set():
    endpoint = TokenEndpoint(body={"token_type": "Bearer", "expires_in": 600, "access_token": "at-2",
                                   "refresh_token": "rt-2"})
    resources = resources_with(endpoint, KOMMO_API_BASE_URL="http://kommo.test")
    tokens = await oauth.refresh_tokens(resources, "acme.kommo.com", Secret("rt-1"))
    assert tokens.refresh_token == Secret("rt-2")
    [(url, _, form)] = endpoint.posted
    assert url == "http://kommo.test/oauth2/access_token"
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt-1",
                    "redirect_uri": "https://mailsync.test/oauth/kommo/callback",
                    "client_id": "client-uuid-1", "client_secret": "the-client-secret"}
    await resources.http.aclose()


def problem(hint):
    return {"hint": hint, "title": "Некорректный запрос", "status": 400,
            "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
            "detail": "В запросе отсутствует ряд параметров или параметры невалидны"}


@pytest.mark.parametrize("status, body, code, grant_refused", [
    (400, problem("Invalid refresh token"), "token_refused", True),
    (400, problem("Authorization code has expired"), "token_refused", True),
    (400, {"error": "invalid_grant", "error_description": "expired"}, "token_refused", True),
    (401, {"title": "Unauthorized", "status": 401, "detail": "Invalid user name or password"},
     "token_refused", True),
    (400, problem("Check the `client_secret` parameter"), "oauth_misconfigured", False),
    (400, problem("Redirect URI is not associated with client"), "oauth_misconfigured", False),
    (500, {"title": "Internal", "status": 500, "trace_id": "x"}, "upstream_unavailable", False),
    (429, {"title": "Too Many Requests", "status": 429, "retry_after": 3}, "rate_limited", False),
])
async def test_refusals_become_our_errors(status, body, code, grant_refused):
    resources = resources_with(TokenEndpoint(status, body))
    with pytest.raises(UpstreamError) as failed:
        await oauth.refresh_tokens(resources, "acme.kommo.com", Secret("rt-1"))
    assert (failed.value.code, oauth.is_grant_refusal(failed.value)) == (code, grant_refused)
    assert "rt-1" not in failed.value.message and "the-client-secret" not in failed.value.message
    await resources.http.aclose()


async def test_a_token_answer_without_a_pair_is_an_upstream_failure():
    resources = resources_with(TokenEndpoint(body={"access_token": "only"}))
    with pytest.raises(UpstreamUnavailable):
        await oauth.exchange_code(resources, "acme.kommo.com", "c")
    await resources.http.aclose()


async def test_a_non_json_error_page_still_maps_by_status():
    resources = resources_with(lambda request: httpx2.Response(429, text="<html>slow down</html>",
                                                             headers={"Retry-After": "7"}))
    with pytest.raises(UpstreamRateLimited) as limited:
        await oauth.exchange_code(resources, "acme.kommo.com", "c")
    assert limited.value.retry_after == 7.0
    await resources.http.aclose()


@pytest.mark.parametrize("hint, words", [
    ("Authorization code has expired", "The authorization code has expired (Kommo codes are valid "
                                       "for 20 minutes)."),
    ("Authorization code has been revoked", "This authorization code has already been used."),
    ("Something new", "Kommo said: Something new"),
])
def test_hints_in_plain_words(hint, words):
    assert oauth.explain(UpstreamError(hint)) == words


def test_state_is_signed_for_this_purpose_only():
    from backend.security import Signer

    resources = SimpleNamespace(signer=Signer(Secret("k" * 40)))
    state = oauth.sign_state(resources, {"n": 1})
    assert oauth.verify_state(resources, state) == {"n": 1}
    with pytest.raises(BadRequest):
        oauth.verify_state(resources, resources.signer.sign("another-purpose", {"n": 1}))

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from backend.errors import Forbidden, Unauthorized
from backend.kommo.widget_auth import verify_widget_token

SECRET = "kommo-client-secret-0123456789abcdefghijklmnopqrstuvwxyz"
AUD = "https://mailsync.test"
NOW = 1_764_000_000


def make_token(secret=SECRET, alg="HS256", **overrides):
    claims = {"iss": "https://acme.kommo.com", "aud": AUD, "jti": "d123", "iat": NOW,
              "nbf": NOW, "exp": NOW + 1800, "account_id": 29085424, "user_id": 8107561,
              "subdomain": "acme", "client_uuid": "0b0123f4", "is_admin": True, **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg}, claims, OctKey.import_key(secret), algorithms=[alg])


def verify(token, now=NOW):
    return verify_widget_token(token, secret=SECRET, audience=AUD, now=lambda: now)


def test_valid_token():
    identity = verify(make_token())
    assert (identity.account_id, identity.user_id, identity.subdomain, identity.is_admin) == (
        29085424, 8107561, "acme", True)


def test_string_ids_are_accepted_and_is_admin_defaults_to_false():
    identity = verify(make_token(account_id="29085424", user_id="1", is_admin=None))
    assert identity.account_id == 29085424 and identity.is_admin is False


@pytest.mark.parametrize("token, now, reason", [
    (make_token(secret="another-secret-0123456789abcdefghijklmnopqrstuvwxyz"), NOW, "wrong key"),
    (make_token(), NOW + 1800 + 31, "expired beyond the leeway"),
    (make_token(), NOW - 31, "not yet valid beyond the leeway"),
    (make_token(aud="https://evil.example"), NOW, "wrong aud"),
    (make_token(aud=None), NOW, "no aud"),
    (make_token(exp=None), NOW, "no exp"),
    (make_token(account_id=None), NOW, "missing account_id"),
    (make_token(user_id=None), NOW, "missing user_id"),
    (make_token(account_id=True), NOW, "boolean account_id"),
    (make_token(alg="HS512"), NOW, "another algorithm"),
    ("not.a.jwt", NOW, "garbage"),
    ("", NOW, "empty"),
])
def test_forged_or_stale_tokens_are_refused(token, now, reason):
    with pytest.raises(Unauthorized) as refused:
        verify(token, now=now)
    assert refused.value.code == "invalid_token", reason


def test_leeway_of_30_seconds_either_side():
    assert verify(make_token(), now=NOW + 1800 + 29).account_id == 29085424
    assert verify(make_token(), now=NOW - 29).account_id == 29085424


def test_unsigned_token_is_refused():
    header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # {"alg":"none","typ":"JWT"}
    body = make_token().split(".")[1]
    with pytest.raises(Unauthorized):
        verify(f"{header}.{body}.")


def test_errors_are_the_contract_codes():
    assert Unauthorized().status_code == 401 and Forbidden().status_code == 403
    assert time.time() > NOW  # the fixed clock is in the past; tokens never depend on it

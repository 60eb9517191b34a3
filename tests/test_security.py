import pytest

from backend.errors import BadRequest, ConfigurationError
from backend.security import (
    DecryptionError,
    Signer,
    Vault,
    constant_time_equals,
    hmac_sha256_hex,
    mask_email,
    new_fernet_key,
    new_hook_key,
    secret_matches,
)
from backend.settings import Secret


def test_round_trip_and_ciphertext_hides_plaintext():
    vault = Vault([Secret(new_fernet_key())])
    ciphertext = vault.encrypt("kommo-refresh-token")
    assert "kommo-refresh-token" not in ciphertext
    assert vault.decrypt(ciphertext) == "kommo-refresh-token"
    assert vault.encrypt("same") != vault.encrypt("same")  # random IV


def test_rotation_old_ciphertext_still_decrypts_and_rotate_moves_to_newest():
    old, new = Secret(new_fernet_key()), Secret(new_fernet_key())
    before = Vault([old]).encrypt("api-key")
    both = Vault([new, old])
    assert both.decrypt(before) == "api-key"
    rotated = both.rotate(before)
    assert Vault([new]).decrypt(rotated) == "api-key"
    with pytest.raises(DecryptionError):
        Vault([new]).decrypt(before)


def test_wrong_key_fails_loudly():
    ciphertext = Vault([Secret(new_fernet_key())]).encrypt("x")
    with pytest.raises(DecryptionError, match="does not decrypt"):
        Vault([Secret(new_fernet_key())]).decrypt(ciphertext)


def test_vault_needs_valid_keys():
    with pytest.raises(ConfigurationError):
        Vault([])
    with pytest.raises(ConfigurationError):
        Vault([Secret("short")])
    assert "key" not in repr(Vault([Secret(new_fernet_key())])).lower().replace("keys=", "")


def test_signed_values_expire_and_are_bound_to_their_purpose():
    signer = Signer(Secret("k" * 40))
    token = signer.sign("oauth-state", {"account": 1})
    assert signer.unsign("oauth-state", token, max_age=60) == {"account": 1}
    with pytest.raises(BadRequest) as wrong_purpose:
        signer.unsign("admin", token, max_age=60)
    assert wrong_purpose.value.code == "bad_state"
    with pytest.raises(BadRequest) as expired:
        signer.unsign("oauth-state", token, max_age=-1)
    assert expired.value.code == "expired_state"
    with pytest.raises(BadRequest):
        Signer(Secret("o" * 40)).unsign("oauth-state", token, max_age=60)


def test_constant_time_helpers():
    assert constant_time_equals("abc", b"abc")
    assert not constant_time_equals("abc", "abd")
    # RFC 4231 test case 2
    assert hmac_sha256_hex("Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_password_comparison_hashes_first_so_length_is_not_told(monkeypatch):
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((len(a), len(b))) or real(a, b))
    assert secret_matches("operator-pass-123", "operator-pass-123")
    assert not secret_matches("x", "operator-pass-123")
    assert not secret_matches("", "operator-pass-123")
    assert not secret_matches("operator-pass-123 ", "operator-pass-123")
    assert compared == [(32, 32)] * 4  # always two SHA-256 digests, whatever was typed


def test_hook_keys_are_long_and_unique():
    keys = {new_hook_key() for _ in range(100)}
    assert len(keys) == 100 and all(len(k) >= 43 for k in keys)


def test_mask_email():
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email(None) is None

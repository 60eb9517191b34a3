"""Encryption at rest, signed expiring values and constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from backend.errors import BadRequest, ConfigurationError, MailsyncError
from backend.settings import Secret


class DecryptionError(MailsyncError):
    """A stored secret could not be decrypted with any configured key."""

    code = "decryption_failed"


class Vault:
    """Encrypts secrets with the newest key; decrypts with any configured key."""

    def __init__(self, keys: tuple[Secret, ...] | list[Secret]) -> None:
        if not keys:
            raise ConfigurationError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(key.reveal()) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid encryption key: {exc}") from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise DecryptionError(
                "a stored secret does not decrypt with any key in ENCRYPTION_KEYS "
                "(was a key removed before `mailsync rotate-keys` ran?)") from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt with the newest key (the value itself is unchanged)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise DecryptionError("a stored secret does not decrypt with any configured key") from None

    def __repr__(self) -> str:
        return "Vault(keys=**********)"


def new_fernet_key() -> str:
    return Fernet.generate_key().decode()


class Signer:
    """Signed, expiring values (OAuth `state`, admin forms). Each use names its purpose (salt),
    so a value signed for one purpose never verifies for another."""

    def __init__(self, secret_key: Secret) -> None:
        self._secret = secret_key

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret.reveal(), salt=f"mailsync:{purpose}")

    def sign(self, purpose: str, value: object) -> str:
        return self._serializer(purpose).dumps(value)

    def unsign(self, purpose: str, token: str, *, max_age: int) -> object:
        try:
            return self._serializer(purpose).loads(token, max_age=max_age)
        except SignatureExpired:
            raise BadRequest("the signed value has expired", code="expired_state") from None
        except BadSignature:
            raise BadRequest("the signed value is not valid", code="bad_state") from None

    def __repr__(self) -> str:
        return "Signer(secret=**********)"


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def secret_matches(given: str, expected: str) -> bool:
    """Compares digests, so neither the time taken nor an early exit tells the password's length
    (compare_digest returns at once on a length mismatch)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def hmac_sha256_hex(key: str | bytes, message: str | bytes) -> str:
    if isinstance(key, str):
        key = key.encode()
    if isinstance(message, str):
        message = message.encode()
    return hmac.new(key, message, "sha256").hexdigest()


def new_hook_key() -> str:
    """An unguessable per-account key carried in webhook URLs (256 bits)."""
    return secrets.token_urlsafe(32)


def mask_email(email: str | None) -> str | None:
    """`jane.doe@example.com` → `j***@example.com`, for logs and non-admin views."""
    if not email or "@" not in email:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"

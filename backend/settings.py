"""The only reader of the environment (and of `.env` when present).

Every variable of docs/ARCHITECTURE.md §4 is read here once into an immutable `Settings`. Secrets are
wrapped in `Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from backend.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/mailsync.db"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
SECRET_KEY_FILE = Path("var/secret.key")
# Sandbox mode (no Kommo keys): the simulated Kommo and the demo widget use these fixed keys.
SANDBOX_CLIENT_ID = "mailsync-sandbox-client"
SANDBOX_CLIENT_SECRET = "mailsync-sandbox-client-secret-not-for-production-use"  # noqa: S105 (public by design; production requires real keys)


class Secret:
    """A string that does not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = DEFAULT_DATABASE_URL
    public_url: str = DEFAULT_PUBLIC_URL
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    encryption_keys: tuple[Secret, ...] = ()
    kommo_client_id: str | None = None
    kommo_client_secret: Secret | None = None
    kommo_redirect_uri: str = ""
    kommo_api_base_url: str | None = None
    mailerlite_api_base_url: str = "https://connect.mailerlite.com/api"
    mailerlite_classic_api_base_url: str = "https://api.mailerlite.com/api/v2"
    mailchimp_api_base_url: str = "https://{dc}.api.mailchimp.com/3.0"
    admin_password: Secret | None = None
    worker_concurrency: int = 8
    job_lease_seconds: int = 120
    engagement_poll_seconds: int = 900
    kommo_catchup_seconds: int = 300
    sandbox_requirejs: str | None = None  # `mailsync sandbox`: load the widget with this require.js

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def sandbox_mode(self) -> bool:
        """No Kommo keys: the server talks to the simulated Kommo only."""
        return not self.kommo_client_id and not self.kommo_client_secret

    @property
    def client_id(self) -> str:
        """The integration id in force: the real one, or the sandbox's (sandbox mode only)."""
        if self.kommo_client_id:
            return self.kommo_client_id
        _require_sandbox_mode(self, "KOMMO_CLIENT_ID")
        return SANDBOX_CLIENT_ID

    @property
    def client_secret(self) -> Secret:
        """The client secret in force (signs widget tokens, keys the disconnect signature). The
        public sandbox secret only in sandbox mode: a server with a real client id must never
        accept widget tokens that anyone can sign."""
        if self.kommo_client_secret:
            return self.kommo_client_secret
        _require_sandbox_mode(self, "KOMMO_CLIENT_SECRET")
        return Secret(SANDBOX_CLIENT_SECRET)

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"Settings({_mask_url_password(shown)})"


def _require_sandbox_mode(settings: Settings, missing: str) -> None:
    if not settings.sandbox_mode:
        raise ConfigurationError(f"{missing} is not set while the other Kommo key is")


def _mask_url_password(text: str) -> str:
    """Database URLs may carry a password (scheme://user:password@host); never print it."""
    return re.sub(r"(://[^:/@'\s]+:)[^@'\s]+@", r"\1********@", text)


def read_dotenv(path: Path) -> dict[str, str]:
    """Minimal `.env` reader: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> Settings:
    """Build settings from the process environment (which wins over `.env`)."""
    env: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    env.update(os.environ if environ is None else environ)
    get = lambda name: (env.get(name) or "").strip() or None  # noqa: E731
    mode = get("ENV") or "development"
    if mode not in ("development", "production", "test"):
        raise ConfigurationError(f"ENV must be development, production or test, not {mode!r}")
    production = mode == "production"
    public_url = (get("PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")
    secret_key = _secret_key(get("SECRET_KEY"), production)
    client_id, client_secret = get("KOMMO_CLIENT_ID"), get("KOMMO_CLIENT_SECRET")
    _both_kommo_keys_or_neither(client_id, client_secret)
    if production:
        _require({"KOMMO_CLIENT_ID": client_id, "KOMMO_CLIENT_SECRET": client_secret,
                  "ENCRYPTION_KEYS": get("ENCRYPTION_KEYS")})
    kommo_base = (get("KOMMO_API_BASE_URL") or "").rstrip("/") or None
    if not client_id and kommo_base is not None:
        _check_sandbox_kommo(kommo_base, public_url)
    return Settings(
        env=mode,
        database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        public_url=public_url,
        secret_key=Secret(secret_key),
        encryption_keys=_encryption_keys(get("ENCRYPTION_KEYS"), secret_key),
        kommo_client_id=client_id,
        kommo_client_secret=Secret(client_secret) if client_secret else None,
        kommo_redirect_uri=get("KOMMO_REDIRECT_URI") or f"{public_url}/oauth/kommo/callback",
        kommo_api_base_url=kommo_base,
        mailerlite_api_base_url=_base(get("MAILERLITE_API_BASE_URL"), Settings.mailerlite_api_base_url),
        mailerlite_classic_api_base_url=_base(
            get("MAILERLITE_CLASSIC_API_BASE_URL"), Settings.mailerlite_classic_api_base_url),
        mailchimp_api_base_url=_base(get("MAILCHIMP_API_BASE_URL"), Settings.mailchimp_api_base_url),
        admin_password=Secret(v) if (v := get("ADMIN_PASSWORD")) else None,
        worker_concurrency=_positive_int("WORKER_CONCURRENCY", get("WORKER_CONCURRENCY"), 8),
        job_lease_seconds=_positive_int("JOB_LEASE_SECONDS", get("JOB_LEASE_SECONDS"), 120),
        engagement_poll_seconds=_positive_int(
            "ENGAGEMENT_POLL_SECONDS", get("ENGAGEMENT_POLL_SECONDS"), 900),
        kommo_catchup_seconds=_positive_int(
            "KOMMO_CATCHUP_SECONDS", get("KOMMO_CATCHUP_SECONDS"), 300),
        sandbox_requirejs=get("SANDBOX_REQUIREJS"),
    )


def _require(values: dict[str, str | None]) -> None:
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigurationError(
            f"ENV=production requires {', '.join(missing)} to be set in the environment")


def _both_kommo_keys_or_neither(client_id: str | None, client_secret: str | None) -> None:
    """One key without the other is a half-configured server in any environment: it would run
    with the public sandbox secret, and accept widget tokens anyone can sign."""
    if bool(client_id) == bool(client_secret):
        return
    given, missing = (("KOMMO_CLIENT_ID", "KOMMO_CLIENT_SECRET") if client_id
                      else ("KOMMO_CLIENT_SECRET", "KOMMO_CLIENT_ID"))
    raise ConfigurationError(
        f"{missing} is not set but {given} is: set both (a real Kommo integration) or neither "
        "(sandbox mode, which talks to the simulated Kommo only)")


# Names that never belong to a real Kommo host (RFC 6761/6762 and private-network conventions).
_LOCAL_SUFFIXES = (".localhost", ".test", ".local", ".internal")


def is_local_base_url(url: str, public_url: str = "") -> bool:
    """True for a URL on this machine or private network (or our own public origin, which the
    sandbox serves the simulated Kommo from): never a real Kommo host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or parts.scheme not in ("http", "https"):
        return False
    if public_url and parts.netloc.lower() == urlsplit(public_url).netloc.lower():
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    # A single label ("localhost", a container name) is no public DNS name.
    return "." not in host or host.endswith(_LOCAL_SUFFIXES)


def _check_sandbox_kommo(base_url: str, public_url: str) -> None:
    if not is_local_base_url(base_url, public_url):
        raise ConfigurationError(
            f"KOMMO_API_BASE_URL {base_url} is not a local address: without KOMMO_CLIENT_ID and "
            "KOMMO_CLIENT_SECRET (sandbox mode) mailsync talks to the simulated Kommo only; set "
            "both keys to talk to a real Kommo")


def _base(value: str | None, default: str) -> str:
    return (value or default).rstrip("/")


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None
    if number < 1:
        raise ConfigurationError(f"{name} must be at least 1, not {number}")
    return number


def _secret_key(value: str | None, production: bool) -> str:
    if value:
        if production and len(value) < 32:
            raise ConfigurationError("SECRET_KEY must be at least 32 characters in production")
        return value
    if production:
        raise ConfigurationError("ENV=production requires SECRET_KEY to be set in the environment")
    return _development_secret_key()


def _development_secret_key() -> str:
    """Generated once per checkout so restarts keep signed values and encrypted secrets readable."""
    path = SECRET_KEY_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


def _encryption_keys(value: str | None, secret_key: str) -> tuple[Secret, ...]:
    if value:
        keys = tuple(Secret(k.strip()) for k in value.split(",") if k.strip())
        for key in keys:
            _check_fernet_key(key.reveal())
        return keys
    digest = hashlib.sha256(b"mailsync-encryption:" + secret_key.encode()).digest()
    return (Secret(base64.urlsafe_b64encode(digest).decode()),)


def _check_fernet_key(key: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(
            "ENCRYPTION_KEYS must be comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each; make one with `mailsync rotate-keys --new-key`)")

import os
import stat

import pytest

from backend.errors import ConfigurationError
from backend.security import new_fernet_key
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Secret, load_settings

PROD = {
    "ENV": "production",
    "SECRET_KEY": "s" * 40,
    "ENCRYPTION_KEYS": "",
    "KOMMO_CLIENT_ID": "client-id",
    "KOMMO_CLIENT_SECRET": "client-secret-value",
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_defaults_in_development():
    settings = load_settings({}, dotenv=None)
    assert settings.env == "development"
    assert settings.database_url == "sqlite+aiosqlite:///./var/mailsync.db"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.public_origin == "http://127.0.0.1:8000"
    assert settings.kommo_redirect_uri == "http://127.0.0.1:8000/oauth/kommo/callback"
    assert settings.kommo_api_base_url is None
    assert settings.mailerlite_api_base_url == "https://connect.mailerlite.com/api"
    assert settings.mailerlite_classic_api_base_url == "https://api.mailerlite.com/api/v2"
    assert settings.mailchimp_api_base_url == "https://{dc}.api.mailchimp.com/3.0"
    assert settings.admin_password is None
    assert settings.worker_concurrency == 8
    assert settings.engagement_poll_seconds == 900
    assert settings.sandbox_mode is True
    assert len(settings.encryption_keys) == 1


def test_development_secret_key_is_generated_once_with_mode_0600(tmp_path):
    first = load_settings({}, dotenv=None).secret_key
    key_file = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert load_settings({}, dotenv=None).secret_key == first
    assert len(first.reveal()) >= 48


def test_environment_overrides_dotenv(tmp_path):
    (tmp_path / ".env").write_text('PUBLIC_URL="https://from-dotenv.example"\nWORKER_CONCURRENCY=3\n')
    settings = load_settings({"WORKER_CONCURRENCY": "5"}, dotenv=tmp_path / ".env")
    assert settings.public_url == "https://from-dotenv.example"
    assert settings.worker_concurrency == 5


def test_public_url_drives_redirect_uri_and_origin():
    settings = load_settings({"PUBLIC_URL": "https://sync.example.com/base/"}, dotenv=None)
    assert settings.public_url == "https://sync.example.com/base"
    assert settings.public_origin == "https://sync.example.com"
    assert settings.kommo_redirect_uri == "https://sync.example.com/base/oauth/kommo/callback"


def test_kommo_keys_leave_sandbox_mode():
    settings = load_settings({"KOMMO_CLIENT_ID": "id", "KOMMO_CLIENT_SECRET": "sec"}, dotenv=None)
    assert settings.sandbox_mode is False


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ENCRYPTION_KEYS", "KOMMO_CLIENT_ID",
                                     "KOMMO_CLIENT_SECRET"])
def test_production_refuses_missing_secret_naming_it(missing):
    env = {**PROD, "ENCRYPTION_KEYS": new_fernet_key()}
    env.pop(missing)
    with pytest.raises(ConfigurationError, match=missing):
        load_settings(env, dotenv=None)


def test_production_refuses_short_secret_key():
    env = {**PROD, "ENCRYPTION_KEYS": new_fernet_key(), "SECRET_KEY": "changethis"}
    with pytest.raises(ConfigurationError, match="SECRET_KEY must be at least 32"):
        load_settings(env, dotenv=None)


def test_production_with_everything_set_starts():
    keys = f"{new_fernet_key()},{new_fernet_key()}"
    settings = load_settings({**PROD, "ENCRYPTION_KEYS": keys}, dotenv=None)
    assert settings.production and len(settings.encryption_keys) == 2


def test_bad_values_are_clear_errors():
    with pytest.raises(ConfigurationError, match="WORKER_CONCURRENCY must be a whole number"):
        load_settings({"WORKER_CONCURRENCY": "many"}, dotenv=None)
    with pytest.raises(ConfigurationError, match="WORKER_CONCURRENCY must be at least 1"):
        load_settings({"WORKER_CONCURRENCY": "0"}, dotenv=None)
    with pytest.raises(ConfigurationError, match="ENCRYPTION_KEYS must be comma-separated Fernet"):
        load_settings({"ENCRYPTION_KEYS": "not-a-key"}, dotenv=None)
    with pytest.raises(ConfigurationError, match="ENV must be"):
        load_settings({"ENV": "staging"}, dotenv=None)


def test_repr_masks_every_secret():
    env = {**PROD, "ENCRYPTION_KEYS": new_fernet_key(), "ADMIN_PASSWORD": "hunter2-admin",
           "DATABASE_URL": "postgresql+psycopg://app:db-password-9@db.internal/app"}
    settings = load_settings(env, dotenv=None)
    text = repr(settings) + str(settings)
    for secret in ("s" * 40, env["ENCRYPTION_KEYS"], "client-secret-value", "hunter2-admin",
                   "db-password-9"):
        assert secret not in text
    assert "client-id" in text  # the client id is not a secret
    assert repr(Secret("x")) == "Secret('**********')"


@pytest.mark.parametrize("env", ["development", "test", "production"])
@pytest.mark.parametrize("given, missing", [("KOMMO_CLIENT_ID", "KOMMO_CLIENT_SECRET"),
                                            ("KOMMO_CLIENT_SECRET", "KOMMO_CLIENT_ID")])
def test_one_kommo_key_without_the_other_refuses_to_start_naming_the_missing_one(env, given, missing):
    values = {**PROD, "ENCRYPTION_KEYS": new_fernet_key(), "ENV": env}
    values.pop(missing)
    with pytest.raises(ConfigurationError, match=f"^{missing} is not set but {given} is"):
        load_settings(values, dotenv=None)


def test_the_sandbox_secret_is_never_in_force_outside_sandbox_mode():
    import dataclasses

    settings = load_settings({"KOMMO_CLIENT_ID": "id", "KOMMO_CLIENT_SECRET": "sec"}, dotenv=None)
    half = dataclasses.replace(settings, kommo_client_secret=None)  # built around load_settings
    assert half.sandbox_mode is False
    with pytest.raises(ConfigurationError, match="KOMMO_CLIENT_SECRET is not set"):
        half.client_secret  # noqa: B018
    with pytest.raises(ConfigurationError, match="KOMMO_CLIENT_ID is not set"):
        dataclasses.replace(settings, kommo_client_id=None).client_id  # noqa: B018
    sandbox = load_settings({}, dotenv=None)
    assert sandbox.client_secret == Secret(SANDBOX_CLIENT_SECRET)
    assert sandbox.client_id == SANDBOX_CLIENT_ID


@pytest.mark.parametrize("base", [
    "http://127.0.0.1:8000/simulated/kommo", "http://localhost:9000", "http://[::1]:9000/kommo",
    "http://kommo.test", "http://sandbox.localhost:8000", "http://10.0.0.5:8000/simulated/kommo",
    "http://192.168.1.20:8000", "http://kommo-sandbox:8080", "https://demo.example.org/simulated/kommo",
])
def test_sandbox_mode_talks_to_a_local_kommo(base):
    settings = load_settings({"KOMMO_API_BASE_URL": base, "PUBLIC_URL": "https://demo.example.org"},
                             dotenv=None)
    assert settings.sandbox_mode and settings.kommo_api_base_url == base


@pytest.mark.parametrize("base", [
    "https://acme.kommo.com", "https://api-c.kommo.com", "https://www.amocrm.ru",
    "https://kommo.example.com", "http://8.8.8.8", "http://127.0.0.1.nip.io",
    "http://127.0.0.1@acme.kommo.com", "ftp://127.0.0.1",
])
def test_sandbox_mode_refuses_a_real_or_unknown_kommo(base):
    with pytest.raises(ConfigurationError, match=r"KOMMO_API_BASE_URL .* is not a local address"):
        load_settings({"KOMMO_API_BASE_URL": base}, dotenv=None)


def test_with_both_keys_any_kommo_base_is_allowed():
    settings = load_settings({"KOMMO_CLIENT_ID": "id", "KOMMO_CLIENT_SECRET": "sec",
                              "KOMMO_API_BASE_URL": "https://kommo-proxy.example.com"}, dotenv=None)
    assert settings.kommo_api_base_url == "https://kommo-proxy.example.com"

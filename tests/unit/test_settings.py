from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ConfigError, load_settings


def test_development_defaults(tmp_path: Path) -> None:
    s = load_settings({"LEDGERLINE_VAR_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'ledgerline.sqlite3'}"
    assert s.redis_url is None
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert (s.session_idle_minutes, s.session_absolute_hours) == (30, 12)
    # The development secret is generated once and then reused.
    assert load_settings({"LEDGERLINE_VAR_DIR": str(tmp_path)}).secret_key == s.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_production_refuses_to_start_without_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SECRET_KEY.*DATABASE_URL.*REDIS_URL"):
        load_settings({"LEDGERLINE_ENV": "production", "LEDGERLINE_VAR_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(
            {"LEDGERLINE_ENV": "production", "SECRET_KEY": "k" * 40, "REDIS_URL": "redis://r"}
        )
    ok = load_settings(
        {
            "LEDGERLINE_ENV": "production",
            "SECRET_KEY": "k" * 40,
            "REDIS_URL": "redis://r:6379/0",
            "DATABASE_URL": "postgresql://u@db/ledgerline",
            "ENCRYPTION_KEYS": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
            "STRIPE_API_KEY": "sk_live_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
        }
    )
    assert ok.production
    assert ok.stripe_api_base is None  # real Stripe
    assert ok.log_json
    assert not (tmp_path / "secret_key").exists()
    with pytest.raises(ConfigError, match="ENCRYPTION_KEYS"):
        load_settings(
            {
                "LEDGERLINE_ENV": "production",
                "SECRET_KEY": "k" * 40,
                "REDIS_URL": "redis://r:6379/0",
                "DATABASE_URL": "postgresql://u@db/ledgerline",
            }
        )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT must be a whole number"),
        ({"PORT": "70000"}, "PORT must be at most 65535"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with"),
        ({"LEDGERLINE_ENV": "staging"}, "LEDGERLINE_ENV must be"),
        ({"SESSION_IDLE_MINUTES": "0"}, "SESSION_IDLE_MINUTES must be positive"),
        ({"STRIPE_API_KEY": "pk_test_x"}, "STRIPE_API_KEY must be a Stripe secret key"),
        ({"STRIPE_WEBHOOK_SECRET": "nope"}, "STRIPE_WEBHOOK_SECRET must be"),
        ({"STRIPE_API_BASE": "ftp://x"}, "STRIPE_API_BASE must be an http"),
    ],
)
def test_bad_configuration_gets_a_clear_message(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"LEDGERLINE_VAR_DIR": str(tmp_path), **env})

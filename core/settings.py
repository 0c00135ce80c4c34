"""Runtime settings, read from environment variables.

Every setting has a documented default that suits the embedded run (SQLite under
``var/``, an embedded Redis). In production (``LEDGERLINE_ENV=production``) the
process refuses to start unless ``SECRET_KEY``, a PostgreSQL ``DATABASE_URL`` and
``REDIS_URL`` are set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Settings:
    env: str
    database_url: str
    redis_url: str | None
    secret_key: str
    var_dir: Path
    host: str
    port: int
    session_idle_minutes: int
    session_absolute_hours: int
    log_json: bool
    encryption_keys: tuple[str, ...]
    smtp_url: str | None
    mail_from: str
    base_url: str
    usage_rate_limit: int = 60  # requests per key per window on POST /api/v1/usage
    usage_rate_window: int = 10  # seconds
    # Stripe: the API key, the API base (None: real Stripe; the embedded run and the tests
    # point it at the Stripe test double), and the webhook signing secret (whsec_...).
    stripe_api_key: str = "sk_test_ledgerline_local"
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = "whsec_ledgerline_local"
    # Web worker processes (uvicorn --workers) started by the launcher: WEB_CONCURRENCY,
    # default 1 (the embedded run on SQLite, which serializes writes anyway).
    web_concurrency: int = 1

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _dev_secret_key(var_dir: Path) -> str:
    """Generate the development secret once and keep it under var/."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    mode = env.get("LEDGERLINE_ENV", "development").strip().lower() or "development"
    if mode not in {"development", "production", "test"}:
        raise ConfigError(f"LEDGERLINE_ENV must be development, test or production, got {mode!r}")
    var_dir = Path(env.get("LEDGERLINE_VAR_DIR") or DEFAULT_VAR_DIR)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'ledgerline.sqlite3'}"
    if not database_url.startswith(("sqlite:///", "postgres://", "postgresql://")):
        raise ConfigError(
            "DATABASE_URL must start with sqlite:///, postgres:// or postgresql://, "
            f"got {database_url.split(':', 1)[0]!r}"
        )
    redis_url = env.get("REDIS_URL") or None
    secret_key = env.get("SECRET_KEY") or ""
    if mode == "production":
        missing = [
            name
            for name, ok in (
                ("SECRET_KEY", len(secret_key) >= 32),
                ("DATABASE_URL (PostgreSQL)", not database_url.startswith("sqlite")),
                ("REDIS_URL", redis_url is not None),
            )
            if not ok
        ]
        if missing:
            raise ConfigError(
                "Refusing to start in production without: "
                + ", ".join(missing)
                + " (SECRET_KEY must be at least 32 characters)"
            )
    elif not secret_key:
        secret_key = _dev_secret_key(var_dir)
    port = _int(env, "PORT", 8000)
    if port > 65535:
        raise ConfigError(f"PORT must be at most 65535, got {port}")
    keys = tuple(k.strip() for k in (env.get("ENCRYPTION_KEYS") or "").split(",") if k.strip())
    if mode == "production" and not keys:
        raise ConfigError("Refusing to start in production without ENCRYPTION_KEYS")
    if not keys:
        from core.crypto import derived_key

        keys = (derived_key(secret_key),)
    smtp_url = env.get("SMTP_URL") or None
    if smtp_url and not smtp_url.startswith(("smtp://", "smtps://")):
        raise ConfigError(f"SMTP_URL must start with smtp:// or smtps://, got {smtp_url!r}")
    host = env.get("HOST") or "127.0.0.1"
    return Settings(
        env=mode,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret_key,
        var_dir=var_dir,
        host=host,
        port=port,
        session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", 30),
        session_absolute_hours=_int(env, "SESSION_ABSOLUTE_HOURS", 12),
        log_json=env.get("LOG_FORMAT", "json" if mode == "production" else "console") == "json",
        encryption_keys=keys,
        smtp_url=smtp_url,
        mail_from=env.get("MAIL_FROM") or "Ledgerline <billing@ledgerline.localhost>",
        base_url=(env.get("BASE_URL") or f"http://{host}:{port}").rstrip("/"),
        usage_rate_limit=_int(env, "USAGE_RATE_LIMIT", 60),
        usage_rate_window=_int(env, "USAGE_RATE_WINDOW", 10),
        web_concurrency=_web_concurrency(env),
        **_stripe(env, mode),
    )


MAX_WEB_CONCURRENCY = 64


def _web_concurrency(env: Mapping[str, str]) -> int:
    workers = _int(env, "WEB_CONCURRENCY", 1)
    if workers > MAX_WEB_CONCURRENCY:
        raise ConfigError(f"WEB_CONCURRENCY must be at most {MAX_WEB_CONCURRENCY}, got {workers}")
    return workers


def _stripe(env: Mapping[str, str], mode: str) -> dict[str, str | None]:
    key = env.get("STRIPE_API_KEY") or "sk_test_ledgerline_local"
    secret = env.get("STRIPE_WEBHOOK_SECRET") or "whsec_ledgerline_local"
    base = (env.get("STRIPE_API_BASE") or "").rstrip("/") or None
    if not key.startswith(("sk_", "rk_")):
        raise ConfigError("STRIPE_API_KEY must be a Stripe secret key (sk_... or rk_...)")
    if not secret.startswith("whsec_"):
        raise ConfigError("STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_...)")
    if base is not None and not base.startswith(("http://", "https://")):
        raise ConfigError(f"STRIPE_API_BASE must be an http(s) URL, got {base!r}")
    if mode == "production" and ("STRIPE_API_KEY" not in env or "STRIPE_WEBHOOK_SECRET" not in env):
        raise ConfigError(
            "Refusing to start in production without STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET"
        )
    return {"stripe_api_key": key, "stripe_api_base": base, "stripe_webhook_secret": secret}

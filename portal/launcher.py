"""``make run``: the whole embedded stack in one command.

Applies migrations, seeds the demo data (idempotent), starts an embedded Redis unless
``REDIS_URL`` is set, then one arq worker and the web server as child processes.
Ctrl-C (or SIGTERM) stops all of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from core.db import bind_engine, close_pool, make_engine, migrate, open_pool
from core.demo_data import DEMO_LOGINS, DEMO_PASSWORD, seed_demo
from core.settings import PROJECT_ROOT, ConfigError, Settings, load_settings
from portal.embedded import start_embedded_redis, start_stripe_double, stripe_double_wanted


async def _seed(settings: Settings) -> bool:
    bind_engine(make_engine(settings.database_url))
    await open_pool(max_size=2)
    try:
        return await seed_demo()
    finally:
        await close_pool()


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    print("Applying migrations…", flush=True)
    try:
        migrate(settings.database_url)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("Seeding demo data…", flush=True)
    created = asyncio.run(_seed(settings))
    print("Demo data created." if created else "Demo data already present.", flush=True)

    embedded: Any = None
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", settings.database_url)
    if settings.redis_url is None:
        embedded, env["REDIS_URL"] = start_embedded_redis(settings.var_dir)
        print(f"Embedded Redis on {env['REDIS_URL']}", flush=True)
    python = sys.executable
    children: list[subprocess.Popen[bytes]] = []
    if stripe_double_wanted(env):
        secret = env.get("STRIPE_WEBHOOK_SECRET") or "whsec_ledgerline_local"
        double, double_url = start_stripe_double(
            host=settings.host, portal_url=settings.base_url, webhook_secret=secret
        )
        children.append(double)
        env |= {
            "STRIPE_API_BASE": double_url,
            "STRIPE_API_KEY": "sk_test_ledgerline_local",
            "STRIPE_WEBHOOK_SECRET": secret,
        }
        print(f"Stripe test double on {double_url} (test card 4242 4242 4242 4242)", flush=True)
    children += [
        subprocess.Popen(  # noqa: S603
            [python, "-m", "arq", "workers.settings.WorkerSettings"],
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
        ),
        subprocess.Popen(  # noqa: S603
            [
                python,
                "-m",
                "uvicorn",
                "--factory",
                "portal.app:create_app",
                "--host",
                settings.host,
                "--port",
                str(settings.port),
                "--no-access-log",
                # WEB_CONCURRENCY: several processes need the import string + --factory
                # above (each worker builds its own app, pools and connections).
                "--workers",
                str(settings.web_concurrency),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
        ),
    ]
    print(f"\nLedgerline is running at http://{settings.host}:{settings.port}/", flush=True)
    print(f"Demo logins (password: {DEMO_PASSWORD}):")
    for login in DEMO_LOGINS:
        print(f"  {login.email:<26} {login.role:<22} {login.where}")
    print("Press Ctrl-C to stop.\n", flush=True)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                print(f"A child process exited ({child.args[2]}); stopping.", file=sys.stderr)
                stopping, exit_code = True, 1
        time.sleep(0.3)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    if embedded is not None:
        embedded.shutdown()
    print("Stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())

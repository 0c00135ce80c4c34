"""arq jobs of the collections area: thin functions that call core services.

* ``daily_dunning`` (cron, 08:00 UTC): today's payment reminders (``core.collections.
  dunning.run_dunning``), emailed through the configured SMTP server.
* ``stripe_reconciliation`` (cron, 02:30 UTC): Stripe balance transactions against the
  ledger (``core.collections.reconciliation.reconcile``).

Both are idempotent: a second run the same day sends nothing twice and records nothing
twice. The reminder emails are rendered here from ``templates/emails/dunning_*``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from arq import cron
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core.collections.dunning import Email, Reminder, run_dunning
from core.collections.reconciliation import reconcile
from core.money import Money, format_money
from core.notifications.mailer import mailer
from core.settings import load_settings

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
_env: Environment | None = None


def _templates() -> Environment:
    global _env
    if _env is None:
        _env = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
    return _env


def compose_reminder(reminder: Reminder) -> Email:
    """The reminder email (subject, text and HTML) for one invoice and step."""
    env = _templates()
    context = {
        "r": reminder,
        "balance": format_money(Money.from_minor(reminder.balance_minor, reminder.currency)),
        "total": format_money(Money.from_minor(reminder.total_minor, reminder.currency)),
        "due": reminder.due_date.strftime("%d %b %Y"),
    }
    return Email(
        subject=env.get_template("emails/dunning_subject.txt").render(**context).strip(),
        text=env.get_template("emails/dunning_reminder.txt").render(**context),
        html=env.get_template("emails/dunning_reminder.html").render(**context),
    )


async def send_reminders(today: date) -> dict[str, int]:
    settings = load_settings()
    result = await run_dunning(
        today, base_url=settings.base_url, compose=compose_reminder, send=mailer().send
    )
    return {"sent": len(result.sent), "failed": len(result.failed), "skipped": len(result.skipped)}


async def daily_dunning(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron entry point: today's (UTC) reminders."""
    return await send_reminders(datetime.now(UTC).date())


async def stripe_reconciliation(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron entry point: compare new Stripe balance transactions with the ledger."""
    summary = await reconcile()
    return {"transactions": summary.transactions, "differences": summary.differences}


FUNCTIONS: list[Any] = [daily_dunning, stripe_reconciliation]  # registered in workers.settings
CRON_JOBS: list[Any] = [
    cron(daily_dunning, hour={8}, minute={0}, run_at_startup=False, unique=True),
    cron(stripe_reconciliation, hour={2}, minute={30}, run_at_startup=False, unique=True),
]

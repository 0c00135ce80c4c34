"""Sending email through SMTP (``SMTP_URL``), or to the log when none is configured.

``smtp://user:pass@host:port`` uses STARTTLS when the server offers it; ``smtps://``
connects with TLS. Sending runs in a thread so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger("ledgerline.mail")


@dataclass(frozen=True, slots=True)
class Mailer:
    smtp_url: str | None
    sender: str

    async def send(self, to: str, subject: str, text: str, html: str | None = None) -> str:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain="ledgerline")
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
        if self.smtp_url is None:
            log.info("email (no SMTP_URL configured)", to=to, subject=subject, body=text)
        else:
            await asyncio.to_thread(self._deliver, message)
        return str(message["Message-ID"])

    def _deliver(self, message: EmailMessage) -> None:
        assert self.smtp_url is not None
        url = urlsplit(self.smtp_url)
        host, port = url.hostname or "127.0.0.1", url.port
        if url.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port or 465, timeout=15, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port or 25, timeout=15)
        with client:
            if url.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context())
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message)


_mailer: Mailer | None = None


def configure(smtp_url: str | None, sender: str) -> Mailer:
    global _mailer
    _mailer = Mailer(smtp_url, sender)
    return _mailer


def mailer() -> Mailer:
    if _mailer is None:
        raise RuntimeError("mail not configured: call core.notifications.mailer.configure()")
    return _mailer

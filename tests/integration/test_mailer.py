from __future__ import annotations

from core.notifications.mailer import Mailer


async def test_mail_reaches_the_smtp_server(mailbox, smtp_server) -> None:
    mailer = Mailer(smtp_server[0], "Ledgerline <billing@ledgerline.test>")
    await mailer.send("ap@customer.example", "Your invoice", "Plain text", "<p>HTML</p>")
    [message] = mailbox.to("ap@customer.example")
    assert message["Subject"] == "Your invoice"
    assert message.get_body(("plain",)).get_content().strip() == "Plain text"
    assert "<p>HTML</p>" in message.get_body(("html",)).get_content()

"""The Stripe double started once per session on a free port, with a webhook receiver.

Each test starts from an empty double (``/_test/reset``) and default settings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from stripe_double import Config, RunningDouble, start_in_thread
from tests.stripe_double.support import Receiver, control, make_client

FAST_RETRIES = [0.05, 0.1, 0.2]


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def double(receiver: Receiver) -> Iterator[RunningDouble]:
    config = Config(webhook_retry_delays=list(FAST_RETRIES))
    running = start_in_thread(webhooks={receiver.url: receiver.secret}, config=config)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh(double: RunningDouble, receiver: Receiver) -> None:
    control(double.url, "/_test/reset")
    control(
        double.url,
        "/_test/config",
        {"latency": 0, "webhook_mode": "auto", "webhook_retry_delays": FAST_RETRIES},
    )
    receiver.clear()


@pytest.fixture
def client(double: RunningDouble) -> stripe.StripeClient:
    return make_client(double.url)


@pytest.fixture
def url(double: RunningDouble) -> str:
    return double.url

"""Stripe's test cards: numbers, ``pm_card_*`` / ``tok_*`` tokens and how each behaves."""

from __future__ import annotations

from dataclasses import dataclass

from stripe_double.errors import StripeError

# behaviours
SUCCEED = "succeed"
DECLINE = "decline"  # every charge is declined (and attaching / setting up fails)
CHARGE_FAILS = "charge_fails"  # attaching succeeds, charges are declined
AUTH_ALWAYS = "auth_always"  # 3-D Secure on every payment, off-session payments fail
AUTH_UNLESS_SETUP = "auth_unless_setup"  # 3-D Secure until set up for off-session use
AUTH_THEN_DECLINE = "auth_then_decline"  # authenticates, then the charge is declined
DISPUTE = "dispute"  # the charge succeeds and is disputed as fraudulent at once


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str
    param: str | None = None


GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")
INSUFFICIENT = Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
LOST = Decline("card_declined", "lost_card", "Your card was declined.")
STOLEN = Decline("card_declined", "stolen_card", "Your card was declined.")
EXPIRED = Decline("expired_card", "expired_card", "Your card has expired.", "exp_month")
CVC = Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc")
PROCESSING = Decline(
    "processing_error",
    "processing_error",
    "An error occurred while processing your card. Try again in a little bit.",
)
AUTH_REQUIRED = Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)
LIVE_CARD = Decline(
    "card_declined",
    "test_mode_live_card",
    "Your card was declined. Your request was in test mode, but used a non test (live) card. "
    "For a list of valid test cards, visit: https://stripe.com/docs/testing.",
)


@dataclass(frozen=True)
class CardSpec:
    number: str
    brand: str
    behaviour: str = SUCCEED
    decline: Decline | None = None
    funding: str = "credit"
    country: str = "US"

    @property
    def last4(self) -> str:
        return self.number[-4:]


_CARDS: dict[str, CardSpec] = {}
_TOKENS: dict[str, CardSpec] = {}


def _card(number: str, brand: str, tokens: tuple[str, ...] = (), **kwargs: object) -> None:
    card = CardSpec(number, brand, **kwargs)  # type: ignore[arg-type]
    _CARDS[number] = card
    for token in tokens:
        _TOKENS[token] = card


_card("4242424242424242", "visa", ("visa",))
_card("4000056655665556", "visa", ("visa_debit",), funding="debit")
_card("5555555555554444", "mastercard", ("mastercard",))
_card("378282246310005", "amex", ("amex",))
_card("4000000000000002", "visa", ("chargeDeclined",), behaviour=DECLINE, decline=GENERIC)
_card(
    "4000000000009995",
    "visa",
    ("chargeDeclinedInsufficientFunds",),
    behaviour=CHARGE_FAILS,
    decline=INSUFFICIENT,
)
_card("4000000000009987", "visa", ("chargeDeclinedLostCard",), behaviour=DECLINE, decline=LOST)
_card("4000000000009979", "visa", ("chargeDeclinedStolenCard",), behaviour=DECLINE, decline=STOLEN)
_card(
    "4000000000000069", "visa", ("chargeDeclinedExpiredCard",), behaviour=DECLINE, decline=EXPIRED
)
_card("4000000000000127", "visa", ("chargeDeclinedIncorrectCvc",), behaviour=DECLINE, decline=CVC)
_card(
    "4000000000000119",
    "visa",
    ("chargeDeclinedProcessingError",),
    behaviour=DECLINE,
    decline=PROCESSING,
)
_card(
    "4000000000000341",
    "visa",
    ("chargeCustomerFail",),
    behaviour=CHARGE_FAILS,
    decline=GENERIC,
)
_card("4000002760003184", "visa", ("authenticationRequired",), behaviour=AUTH_ALWAYS)
_card("4000002500003155", "visa", ("authenticationRequiredOnSetup",), behaviour=AUTH_UNLESS_SETUP)
_card("4000000000003220", "visa", ("threeDSecure2Required",), behaviour=AUTH_ALWAYS)
_card("4000000000003063", "visa", ("threeDSecureRequired",), behaviour=AUTH_ALWAYS)
_card(
    "4000008260003178",
    "visa",
    ("authenticationRequiredChargeDeclinedInsufficientFunds",),
    behaviour=AUTH_THEN_DECLINE,
    decline=INSUFFICIENT,
)
_card("4000008400001629", "visa", behaviour=AUTH_THEN_DECLINE, decline=GENERIC)
_card("4000000000000259", "visa", ("createDispute",), behaviour=DISPUTE)


def from_token(token: str) -> CardSpec | None:
    """``pm_card_visa`` / ``tok_visa`` → the card, or None when not a test token."""
    for prefix in ("pm_card_", "tok_"):
        if token.startswith(prefix):
            return _TOKENS.get(token[len(prefix) :])
    return None


def is_token(value: str) -> bool:
    return from_token(value) is not None


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def from_number(raw: str, param: str = "card[number]") -> CardSpec:
    """A test card for a typed number; Stripe's card errors for bad or live numbers."""
    number = "".join(ch for ch in raw if ch.isdigit())
    if not luhn_ok(number):
        raise card_error("incorrect_number", "Your card number is incorrect.", param=param)
    card = _CARDS.get(number)
    if card is None:
        raise card_error(
            LIVE_CARD.code, LIVE_CARD.message, decline_code=LIVE_CARD.decline_code, param=param
        )
    return card


def card_error(
    code: str,
    message: str,
    *,
    decline_code: str | None = None,
    param: str | None = None,
    extra: dict[str, object] | None = None,
) -> StripeError:
    return StripeError(
        402,
        "card_error",
        message,
        code=code,
        decline_code=decline_code,
        param=param,
        saved=True,
        extra=extra,
    )


def all_cards() -> list[CardSpec]:
    return list(_CARDS.values())


def tokens_for(card: CardSpec) -> list[str]:
    return [f"pm_card_{name}" for name, item in _TOKENS.items() if item is card]

"""The matching engine: which open invoices a bank statement line pays. Pure: plain values
in, plain values out; no I/O.

An ``InvoiceIndex`` is built once per import from the open invoices (number, OCR-
normalized number parts, payer, amount) and the known payers; ``match_line`` tries the
configured rules in order and returns the first suggestion whose confidence reaches the
auto-apply threshold, else the most confident one (for the workbench), else ``None``.
``match_lines`` runs a whole file: every auto-applied suggestion consumes the invoices'
remaining balances (so several payments to one invoice work) and teaches the index the
payer's bank account and name.

Rules (names used in the configuration):

* ``reference_exact``: invoice numbers found verbatim in the remittance text.
* ``reference_fuzzy``: the number's digits after OCR-like noise is undone (O→0, I/L→1,
  S→5, B→8, Z→2, G→6 next to digits), separators dropped, the prefix or the year
  missing, or one character wrong (bounded edit distance, transpositions included);
  needs the amount to single out one candidate.
* ``amount_payer``: the payer (known bank account, or the name of a billing account)
  has exactly one open invoice of this amount.
* ``payer_subset_sum``: one payment to several invoices of the payer whose open
  balances sum to it (bounded search).
* ``amount_unique``: the only open invoice in the currency with this amount; never
  confident enough to auto-apply with the default confidences.

Amounts are integers (minor units). A tolerance (absolute minor units and percent of
the balance, per currency; both must hold) lets a slightly short or over payment count
as "equal": the shortfall stays open on the invoice (for write-off rules), the excess
becomes unapplied cash. Allocations never exceed the line amount nor a remaining balance.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from functools import lru_cache
from itertools import combinations
from typing import NamedTuple

RULES: tuple[str, ...] = (
    "reference_exact",
    "reference_fuzzy",
    "amount_payer",
    "payer_subset_sum",
    "amount_unique",
)

RULE_LABELS = {
    "reference_exact": "Invoice number in the remittance text",
    "reference_fuzzy": "Invoice number with noise (OCR, typo, missing prefix or year)",
    "amount_payer": "Amount and known payer",
    "payer_subset_sum": "Several invoices of the payer summing to the amount",
    "amount_unique": "Only open invoice with this amount",
    "manual": "Applied by staff",
}


@dataclass(frozen=True, slots=True)
class Tolerance:
    absolute_minor: int = 0
    percent: Decimal = Decimal(0)

    def allows(self, difference: int, balance: int) -> bool:
        """``difference`` (>= 0) is small enough in absolute AND relative terms."""
        if difference == 0:
            return True
        if difference > self.absolute_minor:
            return False
        return Decimal(difference) * 100 <= self.percent * Decimal(balance)


@dataclass(frozen=True, slots=True)
class MatchConfig:
    rules: tuple[str, ...] = RULES
    auto_apply_confidence: int = 90
    max_edit_distance: int = 1
    # per currency; "*" is the default for currencies not listed
    tolerances: Mapping[str, Tolerance] = field(
        default_factory=lambda: {"*": Tolerance(500, Decimal(1))}
    )
    subset_max_invoices: int = 40
    subset_max_size: int = 6
    subset_max_steps: int = 30_000
    # base confidence (percent) of each rule's best case; lower cases derive from it
    confidence: Mapping[str, int] = field(
        default_factory=lambda: {
            "reference_exact": 100,
            "reference_fuzzy": 95,
            "amount_payer": 93,
            "payer_subset_sum": 92,
            "amount_unique": 60,
        }
    )

    def tolerance(self, currency_code: str) -> Tolerance:
        return self.tolerances.get(currency_code) or self.tolerances.get("*") or Tolerance()

    def base(self, rule: str) -> int:
        return int(self.confidence.get(rule, 50))


def config_from_dict(raw: Mapping[str, object]) -> MatchConfig:
    """Build a configuration from stored JSON, refusing unknown rules and bad numbers."""
    default = MatchConfig()
    rules_raw = raw.get("rules", list(default.rules))
    if not isinstance(rules_raw, list) or not all(r in RULES for r in rules_raw):
        raise ValueError(f"rules must be a list drawn from {', '.join(RULES)}")
    tolerances: dict[str, Tolerance] = dict(default.tolerances)
    tol_raw = raw.get("tolerances", {})
    if not isinstance(tol_raw, dict):
        raise ValueError("tolerances must be an object")
    for code, value in tol_raw.items():
        if not isinstance(value, dict):
            raise ValueError("each tolerance is {absolute_minor, percent}")
        absolute = int(value.get("absolute_minor", 0))
        percent = Decimal(str(value.get("percent", "0")))
        if absolute < 0 or percent < 0:
            raise ValueError("tolerances must not be negative")
        tolerances[str(code)] = Tolerance(absolute, percent)
    confidence = dict(default.confidence)
    conf_raw = raw.get("confidence", {})
    if isinstance(conf_raw, dict):
        for rule, value in conf_raw.items():
            if rule not in RULES or not 0 <= int(value) <= 100:
                raise ValueError("confidence is a percent per known rule")
            confidence[rule] = int(value)
    threshold = int(str(raw.get("auto_apply_confidence", default.auto_apply_confidence)))
    distance = int(str(raw.get("max_edit_distance", default.max_edit_distance)))
    if not 1 <= threshold <= 101 or not 0 <= distance <= 2:
        raise ValueError("auto_apply_confidence is 1-101 (101: never), max_edit_distance 0-2")
    return replace(
        default,
        rules=tuple(rules_raw),
        auto_apply_confidence=threshold,
        max_edit_distance=distance,
        tolerances=tolerances,
        confidence=confidence,
        subset_max_invoices=int(str(raw.get("subset_max_invoices", default.subset_max_invoices))),
        subset_max_size=int(str(raw.get("subset_max_size", default.subset_max_size))),
    )


class OpenInvoice(NamedTuple):  # a tuple: 100,000 of them are built per import
    id: int
    number: str
    billing_account_id: int
    currency: str
    balance_minor: int
    due_date: date | None = None


@dataclass(frozen=True, slots=True)
class Line:
    key: int  # the caller's identifier (index in the file, or a line id)
    amount_minor: int
    currency: str
    reference: str = ""
    payer_name: str = ""
    payer_account: str = ""


@dataclass(frozen=True, slots=True)
class Suggestion:
    rule: str
    reason: str
    confidence: int
    allocations: tuple[tuple[int, int], ...]  # (invoice id, amount minor), in order
    billing_account_id: int
    unapplied_minor: int = 0

    @property
    def applied_minor(self) -> int:
        return sum(amount for _, amount in self.allocations)


@dataclass(frozen=True, slots=True)
class Outcome:
    line: Line
    suggestion: Suggestion | None
    auto: bool


# ------------------------------------------------------------------ text normalization

_OCR_TO_DIGIT = str.maketrans({"O": "0", "Q": "0", "I": "1", "L": "1", "S": "5", "B": "8"})
_OCR_EXTRA = str.maketrans({"Z": "2", "G": "6"})
_OCR_LETTERS = frozenset("OQILSBZG")
_LEGAL_SUFFIXES = frozenset(
    [
        "GMBH",
        "AG",
        "KG",
        "SE",
        "SA",
        "SAS",
        "SARL",
        "SRL",
        "SPA",
        "BV",
        "NV",
        "LTD",
        "LIMITED",
        "LLC",
        "LLP",
        "INC",
        "CORP",
        "CO",
        "PLC",
        "OY",
        "AB",
        "AS",
    ]
)


@lru_cache(maxsize=65_536)  # payers repeat: each line's name is normalized ~3 times
def normalize_name(name: str) -> str:
    """Upper case ASCII letters and digits, legal-form suffixes and punctuation dropped."""
    ascii_ = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Z0-9]+", ascii_.upper())
    return " ".join(w for w in words if w not in _LEGAL_SUFFIXES)


@lru_cache(maxsize=65_536)
def normalize_account(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", (text or "").upper())


def payer_keys(payer_name: str, payer_account: str) -> list[str]:
    return list(_payer_keys(payer_name, payer_account))


@lru_cache(maxsize=65_536)  # each line asks up to three times (match, learn, store)
def _payer_keys(payer_name: str, payer_account: str) -> tuple[str, ...]:
    keys = []
    account = normalize_account(payer_account)
    if account:
        keys.append(f"acct:{account}")
    name = normalize_name(payer_name)
    if name:
        keys.append(f"name:{name}")
    return tuple(keys)


def _digitize(text: str) -> str:
    """Undo OCR-like letter/digit confusion: a look-alike letter becomes a digit when it
    touches a digit (repeatedly, so "OO1" becomes "001")."""
    chars = list(text)
    changed = True
    while changed:
        changed = False
        for i, ch in enumerate(chars):
            if ch in _OCR_LETTERS:
                left = chars[i - 1] if i else ""
                right = chars[i + 1] if i + 1 < len(chars) else ""
                if left.isdigit() or right.isdigit():
                    chars[i] = ch.translate(_OCR_TO_DIGIT).translate(_OCR_EXTRA)
                    changed = True
    return "".join(chars)


_SEP = r"[\s\-_/.:]?"
_YEAR_SEQ = re.compile(rf"(?<!\d)(20\d\d){_SEP}(\d{{1,8}})(?!\d)")
_DIGITS = re.compile(r"(?<!\d)\d{3,8}(?!\d)")
_DATE = re.compile(
    r"(?<!\d)(?:20\d\d([-/.])[01]?\d\1[0-3]?\d|[0-3]?\d([-/.])[01]?\d\2(?:20)?\d\d)(?!\d)"
)


@dataclass(frozen=True, slots=True)
class RefToken:
    """A piece of remittance text that looks like an invoice number: (year, sequence)."""

    year: str  # "" when the text had no year
    seq: str  # digits without leading zeros


def reference_tokens(text: str) -> list[RefToken]:
    """Invoice-number-like (year, sequence) pairs in ``text``, OCR noise undone."""
    upper = _digitize(unicodedata.normalize("NFKC", text or "").upper())
    upper = _DATE.sub(" ", upper)  # "2026-11-20" is a date, not invoice 11 of 2026
    tokens: list[RefToken] = []
    seen: set[tuple[str, str]] = set()
    covered: list[tuple[int, int]] = []
    for m in _YEAR_SEQ.finditer(upper):
        seq = m.group(2).lstrip("0") or "0"
        key = (m.group(1), seq)
        covered.append(m.span())
        if key not in seen:
            seen.add(key)
            tokens.append(RefToken(*key))
    for m in _DIGITS.finditer(upper):
        if any(a <= m.start() < b for a, b in covered):
            continue
        digits = m.group(0)
        if len(digits) == 4 and digits.startswith("20"):
            continue  # a lone year
        key = ("", digits.lstrip("0") or "0")
        if key not in seen:
            seen.add(key)
            tokens.append(RefToken(*key))
    return tokens


def split_number(number: str) -> tuple[str, str, str] | None:
    """``INV-DE-2026-000123`` → ("INV-DE", "2026", "123")."""
    parts = number.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0].upper(), parts[1], parts[2].lstrip("0") or "0"


@lru_cache(maxsize=65_536)
def _variants(seq: str) -> frozenset[str]:
    """Strings at Damerau edit distance 1 from ``seq`` (digits only, leading zeros
    dropped like the index keys)."""
    n = len(seq)
    digits = "0123456789"
    out = {seq[:i] + seq[i + 1 :] for i in range(n)}
    out.update(seq[:i] + d + seq[i + 1 :] for i in range(n) for d in digits)
    out.update(seq[:i] + d + seq[i:] for i in range(n + 1) for d in digits)
    out.update(seq[:i] + seq[i + 1] + seq[i] + seq[i + 2 :] for i in range(n - 1))
    out.discard(seq)
    return frozenset(v.lstrip("0") or "0" for v in out if v) - {seq}


# ------------------------------------------------------------------ the index


class InvoiceIndex:
    """Open invoices indexed for matching, with remaining balances that auto-applied
    suggestions consume, and payer keys (bank account / name) → billing accounts."""

    def __init__(
        self,
        invoices: Iterable[OpenInvoice],
        known_payers: Mapping[str, Iterable[int]] | None = None,
        account_names: Mapping[int, Iterable[str]] | None = None,
    ) -> None:
        self.invoices: dict[int, OpenInvoice] = {}
        self.remaining: dict[int, int] = {}
        self.by_number: dict[str, int] = {}
        self.by_core: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.by_seq: dict[str, list[int]] = defaultdict(list)
        self.seqs_by_year: dict[str, set[str]] = defaultdict(set)  # for typo lookups
        self.by_account: dict[int, list[int]] = defaultdict(list)
        self.by_amount: dict[tuple[str, int], list[int]] = defaultdict(list)
        self.number_re: re.Pattern[str] | None = None
        self.prefixes: set[str] = set()
        # what ``add`` does, column by column (dict(zip(...)) and tight loops run in C or
        # close to it): this runs over every open invoice of every import
        rows = invoices if isinstance(invoices, list) else list(invoices)
        ids = [inv[0] for inv in rows]
        self.invoices.update(zip(ids, rows, strict=True))
        self.remaining.update(zip(ids, [inv[4] for inv in rows], strict=True))
        numbers = [inv[1].upper() for inv in rows]
        self.by_number.update(zip(numbers, ids, strict=True))
        by_core, by_seq, seqs_by_year = self.by_core, self.by_seq, self.seqs_by_year
        heads: set[str] = set()
        for invoice_id, number in zip(ids, numbers, strict=True):
            prefix, _, rest = number.rpartition("-")
            head, _, year = prefix.rpartition("-")
            if head and year.isdigit() and rest.isdigit():
                seq = rest.lstrip("0") or "0"
                by_core[(year, seq)].append(invoice_id)
                by_seq[seq].append(invoice_id)
                seqs_by_year[year].add(seq)
                heads.add(head)
        self.prefixes.update(heads)
        by_account, by_amount = self.by_account, self.by_amount
        for inv in rows:
            by_account[inv[2]].append(inv[0])
            by_amount[(inv[3], inv[4])].append(inv[0])
        self.payers: dict[str, set[int]] = {}
        # (payer key, account) pairs already stored: the caller need not write them again
        self.stored_payers: frozenset[tuple[str, int]] = frozenset()
        # billing account -> issuing entity (the loader fills it: payments post per entity)
        self.entities: dict[int, int] = {}
        for key, accounts in (known_payers or {}).items():
            self.payers.setdefault(key, set()).update(accounts)
        for account_id, names in (account_names or {}).items():
            for name in names:
                normalized = normalize_name(name)
                if normalized:
                    self.payers.setdefault(f"name:{normalized}", set()).add(account_id)

    def add(self, inv: OpenInvoice) -> None:
        invoice_id = inv.id
        self.invoices[invoice_id] = inv
        self.remaining[invoice_id] = inv.balance_minor
        number = inv.number.upper()
        self.by_number[number] = invoice_id
        parts = number.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            seq = parts[2].lstrip("0") or "0"
            self.by_core[(parts[1], seq)].append(invoice_id)
            self.by_seq[seq].append(invoice_id)
            self.seqs_by_year[parts[1]].add(seq)
            if parts[0] not in self.prefixes:
                self.prefixes.add(parts[0])
                self.number_re = None
        self.by_account[inv.billing_account_id].append(invoice_id)
        self.by_amount[(inv.currency, inv.balance_minor)].append(invoice_id)

    def number_pattern(self) -> re.Pattern[str] | None:
        if self.number_re is None and self.prefixes:
            alternatives = "|".join(re.escape(p) for p in sorted(self.prefixes, key=len)[::-1])
            self.number_re = re.compile(rf"(?<![A-Z0-9])(?:{alternatives})-\d{{4}}-\d+")
        return self.number_re

    def open_ids(self, ids: Iterable[int], currency_code: str) -> list[int]:
        return [
            i
            for i in ids
            if self.remaining.get(i, 0) > 0 and self.invoices[i].currency == currency_code
        ]

    def payer_accounts(self, line: Line) -> tuple[set[int], str]:
        """Billing accounts the payer is known to pay for, and how we know."""
        for key in payer_keys(line.payer_name, line.payer_account):
            accounts = self.payers.get(key)
            if accounts:
                return set(accounts), ("bank account" if key.startswith("acct:") else "name")
        return set(), ""

    def learn(self, line: Line, billing_account_id: int) -> None:
        for key in payer_keys(line.payer_name, line.payer_account):
            self.payers.setdefault(key, set()).add(billing_account_id)

    def consume(self, suggestion: Suggestion) -> None:
        for invoice_id, amount in suggestion.allocations:
            left = self.remaining[invoice_id] - amount
            self.remaining[invoice_id] = left
            if left > 0:  # findable by its new balance too
                self.by_amount[(self.invoices[invoice_id].currency, left)].append(invoice_id)

    def with_amount(self, currency_code: str, amount: int) -> list[int]:
        """Open invoices whose remaining balance is ``amount``."""
        ids = self.by_amount.get((currency_code, amount), [])
        return list(dict.fromkeys(i for i in ids if self.remaining.get(i) == amount))


# ------------------------------------------------------------------ rules


def _label(index: InvoiceIndex, ids: Sequence[int]) -> str:
    return ", ".join(index.invoices[i].number for i in ids)


def _allocate(
    index: InvoiceIndex, ids: Sequence[int], amount: int
) -> tuple[tuple[tuple[int, int], ...], int]:
    """Fill invoices in order up to ``amount``: (allocations, unapplied)."""
    left = amount
    out: list[tuple[int, int]] = []
    for invoice_id in ids:
        if left <= 0:
            break
        part = min(left, index.remaining[invoice_id])
        if part > 0:
            out.append((invoice_id, part))
            left -= part
    return tuple(out), left


def _fits(config: MatchConfig, line: Line, balance: int) -> bool:
    return config.tolerance(line.currency).allows(abs(line.amount_minor - balance), balance)


def _suggest(
    index: InvoiceIndex,
    line: Line,
    rule: str,
    ids: Sequence[int],
    confidence: int,
    reason: str,
    payer: set[int],
) -> Suggestion:
    """Allocate ``line`` over ``ids`` (in order) with the confidence adjusted for the
    payer: a known payer who does not own the invoices lowers it, one who does raises it;
    invoices of several billing accounts are never applied automatically."""
    allocations, unapplied = _allocate(index, ids, line.amount_minor)
    accounts = {index.invoices[i].billing_account_id for i, _ in allocations}
    if payer and not accounts <= payer:
        confidence -= 15
        reason += "; the invoice belongs to another customer than the payer's bank account"
    if len(accounts) > 1:
        confidence = min(confidence, 80)
        reason += "; invoices of several billing accounts"
    owner = index.invoices[allocations[0][0]].billing_account_id if allocations else 0
    return Suggestion(rule, reason, max(0, min(100, confidence)), allocations, owner, unapplied)


def _amount_case(
    config: MatchConfig, index: InvoiceIndex, line: Line, ids: Sequence[int]
) -> tuple[int, str]:
    """Confidence penalty and wording for how the amount relates to the balances."""
    total = sum(index.remaining[i] for i in ids)
    if line.amount_minor == total:
        return 0, "amount equals the open balance"
    if _fits(config, line, total):
        if line.amount_minor < total:
            return 2, "short by an amount within tolerance (residual left open)"
        return 3, "overpaid within tolerance (excess to unapplied cash)"
    if line.amount_minor < total:
        return 9, "partial payment"
    return 10, "overpayment (excess to unapplied cash)"


def _near_numbers(index: InvoiceIndex, invoice_id: int, line: Line) -> list[int]:
    """Open invoices whose number is one edit away and whose balance is the amount
    (looked up by amount: usually none or one candidate to compare)."""
    others = [o for o in index.with_amount(line.currency, line.amount_minor) if o != invoice_id]
    parts = split_number(index.invoices[invoice_id].number) if others else None
    if not parts:
        return []  # usually no other invoice has the amount: no variants to compute
    variants = _variants(parts[2])
    found: list[int] = []
    for other in others:
        other_parts = split_number(index.invoices[other].number)
        if other_parts and other_parts[1] == parts[1] and other_parts[2] in variants:
            found.append(other)
    return found


def rule_reference_exact(
    config: MatchConfig, index: InvoiceIndex, line: Line, payer: set[int]
) -> Suggestion | None:
    text = (line.reference or "").upper()
    if not text:
        return None
    ids = index.open_ids(_candidates_in(text, index), line.currency)
    if not ids:
        return None
    base = config.base("reference_exact")
    penalty, wording = _amount_case(config, index, line, ids)
    reason = f"{_label(index, ids)} quoted in the remittance text; {wording}"
    if penalty and len(ids) == 1:
        near = _near_numbers(index, ids[0], line)
        if near:  # the amount fits a number one character away exactly: ambiguous
            penalty = 30
            reason += f"; but {_label(index, near)} (one character away) has exactly this amount"
    elif penalty >= 9 and len(ids) > 1:
        subset = _subset_sum(config, index, ids, line.amount_minor)
        if subset and len(subset) == 1:
            chosen = subset[0]
            return _suggest(
                index,
                line,
                "reference_exact",
                chosen,
                base - 5,
                f"{_label(index, chosen)} quoted; their balances sum to the amount",
                payer,
            )
        penalty = 20
    return _suggest(index, line, "reference_exact", ids, base - penalty, reason, payer)


def _candidates_in(text: str, index: InvoiceIndex) -> list[int]:
    """Invoice numbers appearing verbatim in ``text`` (possibly running on into other
    words, e.g. "INV-DE-2026-000123THANKS"), in order of appearance."""
    pattern = index.number_pattern()
    if pattern is None:
        return []
    out: list[int] = []
    for m in pattern.finditer(text):
        hit = index.by_number.get(m.group(0))
        if hit is not None and hit not in out:
            out.append(hit)
    return out


def _fuzzy_candidates(
    config: MatchConfig,
    index: InvoiceIndex,
    token: RefToken,
    amount_range: tuple[int, int] | None = None,
) -> list[tuple[int, str]]:
    """(invoice id, how) for one reference token: exact digits, missing year, typo.
    With ``amount_range`` (low, high), the typo candidates (numerous when numbering is
    dense) are kept only if their remaining balance is in it: only those can be chosen."""
    out: list[tuple[int, str]] = []
    seen: set[int] = set()
    remaining = index.remaining
    low, high = amount_range or (0, 0)

    def add(ids: Iterable[int], how: str, check: bool = False) -> None:
        if check and amount_range:
            ids = [i for i in ids if low <= remaining[i] <= high]
        for i in ids:
            if i not in seen:
                seen.add(i)
                out.append((i, how))

    if token.year:
        add(index.by_core.get((token.year, token.seq), []), "number digits (OCR noise removed)")
    else:
        add(index.by_seq.get(token.seq, []), "number without prefix or year")
    if config.max_edit_distance >= 1:
        variants: AbstractSet[str] = _variants(token.seq)
        if config.max_edit_distance >= 2:
            variants = set(variants) | {w for v in variants for w in _variants(v)}
        if token.year:  # only the variants that exist: a set intersection, not ~135 lookups
            year, by_core = token.year, index.by_core
            existing = variants & index.seqs_by_year.get(token.year, set())
            lists = [by_core[(year, v)] for v in existing]
            how = "number one character off"
        else:
            by_seq = index.by_seq
            lists = [by_seq[v] for v in variants if v in by_seq]
            how = "number one character off, no year"
        if amount_range is None:
            add([i for ids in lists for i in ids], how)
        else:  # filtered while collecting: these lists are long when numbering is dense
            add([i for ids in lists for i in ids if low <= remaining[i] <= high], how)
        if token.year:  # a typo in the year
            add(index.by_seq.get(token.seq, []), "number with a wrong year", True)
    return out


_FUZZY_PENALTY = {
    "number digits (OCR noise removed)": 0,
    "number without prefix or year": 1,
    "number one character off": 3,
    "number with a wrong year": 3,
    "number one character off, no year": 5,
}


def rule_reference_fuzzy(
    config: MatchConfig, index: InvoiceIndex, line: Line, payer: set[int]
) -> Suggestion | None:
    tokens = reference_tokens(line.reference)
    if not tokens:
        return None
    base = config.base("reference_fuzzy")
    resolved: list[tuple[int, str]] = []
    slack = config.tolerance(line.currency).absolute_minor
    window = (line.amount_minor - slack, line.amount_minor + slack) if len(tokens) == 1 else None

    for token in tokens[:6]:
        remaining, invoices = index.remaining, index.invoices
        candidates = [
            (i, how)
            for i, how in _fuzzy_candidates(config, index, token, window)
            if remaining[i] > 0 and invoices[i].currency == line.currency
        ]
        if payer:
            owned = [
                (i, how) for i, how in candidates if index.invoices[i].billing_account_id in payer
            ]
            candidates = owned or candidates
        if len(tokens) == 1:
            fitting = [(i, h) for i, h in candidates if _fits(config, line, index.remaining[i])]
            exact = [(i, h) for i, h in fitting if index.remaining[i] == line.amount_minor]
            pick = exact if len(exact) == 1 else fitting
            if len(pick) == 1:
                invoice_id, how = pick[0]
                penalty, wording = _amount_case(config, index, line, [invoice_id])
                reason = f"{index.invoices[invoice_id].number} ({how}); {wording}"
                return _suggest(
                    index,
                    line,
                    "reference_fuzzy",
                    [invoice_id],
                    base - _FUZZY_PENALTY.get(how, 5) - penalty,
                    reason,
                    payer,
                )
            direct = [(i, h) for i, h in candidates if "off" not in h and "wrong" not in h]
            if len(direct) == 1:
                invoice_id, how = direct[0]
                penalty, wording = _amount_case(config, index, line, [invoice_id])
                reason = f"{index.invoices[invoice_id].number} ({how}); {wording}"
                return _suggest(
                    index, line, "reference_fuzzy", [invoice_id], base - 15 - penalty, reason, payer
                )
            if pick:
                ids = [i for i, _ in pick[:3]]
                return _suggest(
                    index,
                    line,
                    "reference_fuzzy",
                    ids[:1],
                    50,
                    f"several invoices look like the reference: {_label(index, ids)}",
                    payer,
                )
            return None
        direct = [(i, h) for i, h in candidates if "off" not in h and "wrong" not in h]
        if len(direct) == 1:
            resolved.append(direct[0])
        elif len(candidates) == 1:
            resolved.append(candidates[0])
    ids = list(dict.fromkeys(i for i, _ in resolved))
    if not ids:
        return None
    penalty, wording = _amount_case(config, index, line, ids)
    reason = f"{_label(index, ids)} (numbers with noise); {wording}"
    if len(resolved) < len(tokens):
        penalty = max(penalty, 12)
    return _suggest(index, line, "reference_fuzzy", ids, base - 5 - penalty, reason, payer)


def rule_amount_payer(
    config: MatchConfig, index: InvoiceIndex, line: Line, payer: set[int], how: str
) -> Suggestion | None:
    if not payer:
        return None
    candidates = index.open_ids(
        [i for account in payer for i in index.by_account.get(account, [])], line.currency
    )
    exact = [i for i in candidates if index.remaining[i] == line.amount_minor]
    fitting = exact or [i for i in candidates if _fits(config, line, index.remaining[i])]
    base = config.base("amount_payer") - (0 if how == "bank account" else 6)
    if len(fitting) == 1:
        penalty, wording = _amount_case(config, index, line, fitting)
        if not exact:  # only near the amount: a set of invoices may fit it exactly
            penalty = max(penalty, 12)
        reason = f"payer known by {how}; {index.invoices[fitting[0]].number}: {wording}"
        return _suggest(index, line, "amount_payer", fitting, base - penalty, reason, payer)
    if len(fitting) > 1:
        fitting.sort(key=lambda i: (index.invoices[i].due_date or date.max, i))
        reason = (
            f"payer known by {how}; {len(fitting)} of their invoices have this amount "
            f"({_label(index, fitting[:3])}): the oldest is suggested"
        )
        return _suggest(index, line, "amount_payer", fitting[:1], 60, reason, payer)
    return None


def _subset_sum(
    config: MatchConfig, index: InvoiceIndex, ids: Sequence[int], target: int
) -> list[list[int]]:
    """Subsets of ``ids`` (the oldest ``subset_max_invoices``) whose remaining balances sum
    exactly to ``target``: the smallest size (2..``subset_max_size``) that has any, at
    most two of them (two means ambiguous). Each size is searched completely with a hash
    lookup for the last invoice, within ``subset_max_steps`` combinations in all; a
    search cut short reports ambiguity."""
    pool = sorted(
        (i for i in ids if 0 < index.remaining[i] <= target),
        key=lambda i: (index.invoices[i].due_date or date.max, i),
    )[: config.subset_max_invoices]
    position: dict[int, list[int]] = defaultdict(list)
    for k, invoice_id in enumerate(pool):
        position[index.remaining[invoice_id]].append(k)
    amounts = [index.remaining[i] for i in pool]
    steps = 0
    for size in range(2, config.subset_max_size + 1):
        found: list[list[int]] = []
        for head in combinations(range(len(pool)), size - 1):
            steps += 1
            if steps > config.subset_max_steps:
                return [found[0], found[0]] if found else []
            rest = target - sum(amounts[k] for k in head)
            for k in position.get(rest, ()):
                if k > head[-1]:
                    found.append([pool[j] for j in (*head, k)])
            if len(found) >= 2:
                return found[:2]
        if found:
            return found
    return []


def rule_payer_subset_sum(
    config: MatchConfig, index: InvoiceIndex, line: Line, payer: set[int], how: str
) -> Suggestion | None:
    if not payer:
        return None
    candidates = index.open_ids(
        [i for account in payer for i in index.by_account.get(account, [])], line.currency
    )
    if len(candidates) < 2:
        return None
    subsets = _subset_sum(config, index, candidates, line.amount_minor)
    if not subsets:
        return None
    base = config.base("payer_subset_sum") - (0 if how == "bank account" else 6)
    chosen = subsets[0]
    if len(subsets) == 1:
        reason = f"payer known by {how}; {_label(index, chosen)} sum exactly to the amount"
        return _suggest(index, line, "payer_subset_sum", chosen, base, reason, payer)
    reason = f"payer known by {how}; several sets of invoices sum to the amount"
    return _suggest(index, line, "payer_subset_sum", chosen, 55, reason, payer)


def rule_amount_unique(
    config: MatchConfig, index: InvoiceIndex, line: Line, payer: set[int]
) -> Suggestion | None:
    ids = index.with_amount(line.currency, line.amount_minor)
    if len(ids) != 1:
        return None
    reason = f"{index.invoices[ids[0]].number} is the only open invoice with this amount"
    return _suggest(index, line, "amount_unique", ids, config.base("amount_unique"), reason, payer)


def match_line(config: MatchConfig, index: InvoiceIndex, line: Line) -> Outcome:
    """Try the configured rules in order; see the module docstring."""
    if line.amount_minor <= 0:
        return Outcome(line, None, False)
    payer, how = index.payer_accounts(line)
    best: Suggestion | None = None
    for rule in config.rules:
        if rule == "reference_exact":
            found = rule_reference_exact(config, index, line, payer)
        elif rule == "reference_fuzzy":
            found = rule_reference_fuzzy(config, index, line, payer)
        elif rule == "amount_payer":
            found = rule_amount_payer(config, index, line, payer, how)
        elif rule == "payer_subset_sum":
            found = rule_payer_subset_sum(config, index, line, payer, how)
        else:
            found = rule_amount_unique(config, index, line, payer)
        if found is None or not found.allocations:
            continue
        accounts = {index.invoices[i].billing_account_id for i, _ in found.allocations}
        if found.confidence >= config.auto_apply_confidence and len(accounts) == 1:
            return Outcome(line, found, True)  # one payment belongs to one billing account
        if best is None or found.confidence > best.confidence:
            best = found
    return Outcome(line, best, False)


def match_lines(config: MatchConfig, index: InvoiceIndex, lines: Iterable[Line]) -> list[Outcome]:
    """Match a whole file in order; auto-applied suggestions consume balances and teach
    the index the payer's bank account and name."""
    outcomes: list[Outcome] = []
    for line in lines:
        outcome = match_line(config, index, line)
        if outcome.auto and outcome.suggestion is not None:
            index.consume(outcome.suggestion)
            index.learn(line, outcome.suggestion.billing_account_id)
        outcomes.append(outcome)
    return outcomes

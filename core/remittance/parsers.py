"""Reading bank statements: camt.053 (ISO 20022 XML), BAI2, MT940 and CSV with a saved
column mapping. Pure: bytes (and a mapping) in, a ``ParsedStatement`` out, or
``StatementRefused`` naming the line (or XML element) and the reason.

Amounts become integer minor units through ``core.money`` (exact: an amount with more
decimals than its currency is refused, never rounded). Only credits (money in) are
receipts; debits are kept as ``ignored`` lines so the statement stays complete.

Libraries: ``mt-940`` (MT940), ``bai2`` (BAI2), ``defusedxml`` (camt.053: no well-kept
camt parser exists on PyPI; the XML is read with entity expansion and external
references refused).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core.money import Money, currency

FORMATS: dict[str, str] = {
    "camt053": "camt.053 (ISO 20022 XML)",
    "bai2": "BAI2",
    "mt940": "MT940",
    "csv": "CSV (saved column mapping)",
}
MAX_BYTES = 20 * 1024 * 1024

CSV_FIELDS: tuple[str, ...] = (
    "value_date",
    "amount",
    "credit",
    "debit",
    "currency",
    "reference",
    "payer_name",
    "payer_account",
    "bank_reference",
    "statement_id",
)
SIGN_CONVENTIONS = ("plus_is_credit", "minus_is_credit", "separate_columns")


class StatementRefused(ValueError):
    """The file cannot be imported; ``where`` is e.g. "line 12" or "<Ntry> #3"."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedLine:
    line_no: int  # position in the file: a line number, or the entry's index for XML
    value_date: date
    amount_minor: int  # positive: money in (credit); negative: money out
    currency: str
    reference: str = ""
    payer_name: str = ""
    payer_account: str = ""
    bank_reference: str = ""


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    format: str
    statement_id: str
    bank_account: str
    content_hash: str
    lines: list[ParsedLine] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.format}:{self.bank_account}:{self.statement_id}"[:200]


@dataclass(frozen=True, slots=True)
class CsvMappingSpec:
    """How to read one bank's CSV export (see ``CsvMapping`` table)."""

    columns: Mapping[str, str]  # our field -> header name (or 1-based column number)
    delimiter: str = ","
    has_header: bool = True
    date_format: str = "%Y-%m-%d"
    decimal_separator: str = "."
    sign_convention: str = "plus_is_credit"
    default_currency: str = ""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_minor(text: str | Decimal, code: str, where: str) -> int:
    """Exact conversion of a decimal amount to minor units, or a refusal."""
    try:
        cur = currency(code)
    except (ValueError, TypeError):
        raise StatementRefused(where, f"unknown currency {code!r}") from None
    try:
        value = text if isinstance(text, Decimal) else Decimal(text.strip())
    except InvalidOperation:
        raise StatementRefused(where, f"amount {text!r} is not a number") from None
    if not value.is_finite():
        raise StatementRefused(where, f"amount {text!r} is not a number")
    try:
        return Money(value, cur).to_minor()
    except ValueError:
        raise StatementRefused(
            where, f"amount {text} has more decimals than {cur.code} allows"
        ) from None


def _decode(data: bytes, where: str = "") -> str:
    if len(data) > MAX_BYTES:
        raise StatementRefused(where, "the file is larger than 20 MB")
    if not data.strip():
        raise StatementRefused(where, "the file is empty")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise StatementRefused(where, "the file is not text")  # pragma: no cover (cp1252 ~ total)


def normalize_account(text: str) -> str:
    """An IBAN or account number without spaces, upper case."""
    return re.sub(r"[\s-]", "", text or "").upper()


# ----------------------------------------------------------------------------- camt.053


def _strip_namespaces(root: Any) -> None:
    """camt.053 versions differ only in their namespace: drop it so that the C-level
    ``find``/``findtext`` paths below work for every version."""
    for element in root.iter():
        tag = element.tag
        if isinstance(tag, str) and tag[:1] == "{":
            element.tag = tag.rsplit("}", 1)[1]


def _child(node: Any, *path: str) -> Any | None:
    """The first element along ``path``, one plain tag at a time (the C fast path of
    ``find``; a path with "/" would go through the pure-Python ElementPath)."""
    for name in path:
        if node is None:
            return None
        node = node.find(name)
    return node


def _children(node: Any, name: str) -> list[Any]:
    return [] if node is None else node.findall(name)


def _text(node: Any, *path: str) -> str:
    node = _child(node, *path)
    return "" if node is None else (node.text or "").strip()


def _account_id(acct: Any) -> str:
    return normalize_account(_text(acct, "Id", "IBAN") or _text(acct, "Id", "Othr", "Id"))


def _xml_date(node: Any, where: str) -> date:
    text = _text(node, "Dt") or _text(node, "DtTm")[:10]
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise StatementRefused(where, f"date {text!r} is not YYYY-MM-DD") from None


def _remittance_text(node: Any) -> str:
    rmt = _child(node, "RmtInf")
    parts = [(u.text or "").strip() for u in _children(rmt, "Ustrd")]
    for strd in _children(rmt, "Strd"):
        ref = _text(strd, "CdtrRefInf", "Ref")
        if ref:
            parts.append(ref)
        parts.extend(
            (n.text or "").strip()
            for n in strd.iter()
            if n.tag in {"Nb", "AddtlRmtInf"} and (n.text or "").strip()
        )
    e2e = _text(node, "Refs", "EndToEndId")
    if e2e and e2e.upper() != "NOTPROVIDED":
        parts.append(e2e)
    return " ".join(p for p in parts if p)


def _party_name(node: Any) -> str:
    return _text(node, "RltdPties", "Dbtr", "Nm") or _text(node, "RltdPties", "Dbtr", "Pty", "Nm")


def _party_account(node: Any) -> str:
    acct = _child(node, "RltdPties", "DbtrAcct")
    return _account_id(acct) if acct is not None else ""


def _amount(node: Any, where: str) -> tuple[int, str]:
    amt = _child(node, "Amt")
    if amt is None:
        amt = _child(node, "AmtDtls", "TxAmt", "Amt")
    if amt is None or not (amt.text or "").strip():
        raise StatementRefused(where, "missing <Amt>")
    code = (amt.get("Ccy") or "").strip()
    if not code:
        raise StatementRefused(where, "<Amt> has no Ccy attribute")
    minor = to_minor(amt.text, code, where)
    if minor < 0:
        raise StatementRefused(where, "<Amt> must not be negative (use CdtDbtInd)")
    return minor, currency(code).code


def _plain_xml(data: bytes) -> bool:
    """An ASCII-compatible document with no document type declaration: it cannot
    declare entities (expansion bombs, external references), so the C parser is safe
    for it. Anything else (a DTD, UTF-16/32) goes through ``defusedxml``."""
    head = data[:4]
    return (
        b"<!DOCTYPE" not in data
        and b"\x00" not in head
        and head[:2] not in (b"\xff\xfe", b"\xfe\xff")
    )


_ROOT_DEFAULT_NS = re.compile(
    rb'\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>)?\s*<Document\b[^>]*?(\sxmlns="[^"<>]*")'
)


def _blank_default_namespace(data: bytes) -> bytes | None:
    """The usual camt file declares one default namespace on <Document> and no prefixes:
    blank that declaration out (same length, so error positions stay right) and every tag
    comes out unqualified, with no 210,000-element renaming pass. None otherwise."""
    if b"xmlns:" in data or data.count(b"xmlns=") != 1:
        return None
    found = _ROOT_DEFAULT_NS.match(data)
    if found is None:
        return None
    start, end = found.span(1)
    return data[:start] + b" " * (end - start) + data[end:]


def _fast_xml(data: bytes) -> Any:
    """``xml.etree``'s C parser and tree builder (several times faster than the
    pure-Python parser ``defusedxml`` subclasses); only for ``_plain_xml`` documents."""
    from xml.etree.ElementTree import XMLParser

    parser = XMLParser()  # noqa: S314 (no DTD here, so no entity can be declared)
    parser.feed(data)
    return parser.close()


def parse_camt053(data: bytes) -> ParsedStatement:
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    if len(data) > MAX_BYTES:
        raise StatementRefused("", "the file is larger than 20 MB")
    try:
        plain = _plain_xml(data)
        unqualified = _blank_default_namespace(data) if plain else None
        root = _fast_xml(unqualified or data) if plain else fromstring(data)
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise StatementRefused(f"line {line}, column {column}", "the XML is malformed") from None
    except DefusedXmlException:
        raise StatementRefused("", "the XML uses forbidden constructs (entities)") from None
    if unqualified is None:
        _strip_namespaces(root)
    statement = _child(root, "BkToCstmrStmt", "Stmt")
    if statement is None:
        raise StatementRefused("<Document>", "no <BkToCstmrStmt>/<Stmt>: not a camt.053 file")
    statement_id = _text(statement, "Id")
    if not statement_id:
        raise StatementRefused("<Stmt>", "missing <Id>")
    account = _account_id(_child(statement, "Acct"))
    lines: list[ParsedLine] = []
    for index, entry in enumerate(_children(statement, "Ntry"), start=1):
        where = f"<Ntry> #{index}"
        indicator = _text(entry, "CdtDbtInd")
        if indicator not in {"CRDT", "DBIT"}:
            raise StatementRefused(where, f"<CdtDbtInd> must be CRDT or DBIT, not {indicator!r}")
        sign = 1 if indicator == "CRDT" else -1
        date_node = _child(entry, "ValDt")
        if date_node is None:
            date_node = _child(entry, "BookgDt")
        if date_node is None:
            raise StatementRefused(where, "missing <ValDt> and <BookgDt>")
        value_date = _xml_date(date_node, where)
        entry_amount, entry_currency = _amount(entry, where)
        bank_ref = _text(entry, "AcctSvcrRef")
        details = [tx for d in _children(entry, "NtryDtls") for tx in _children(d, "TxDtls")]
        with_amounts = [tx for tx in details if _child(tx, "Amt") is not None]
        if len(details) > 1 and len(with_amounts) == len(details):
            parts = [_amount(tx, f"{where} <TxDtls> #{n}") for n, tx in enumerate(details, 1)]
            if sum(p[0] for p in parts) != entry_amount:
                raise StatementRefused(where, "the <TxDtls> amounts do not add up to <Amt>")
            for tx, (minor, code) in zip(details, parts, strict=True):
                lines.append(
                    ParsedLine(
                        line_no=index,
                        value_date=value_date,
                        amount_minor=sign * minor,
                        currency=code,
                        reference=_remittance_text(tx),
                        payer_name=_party_name(tx),
                        payer_account=_party_account(tx),
                        bank_reference=_text(tx, "Refs", "AcctSvcrRef") or bank_ref,
                    )
                )
            continue
        tx = details[0] if details else entry
        lines.append(
            ParsedLine(
                line_no=index,
                value_date=value_date,
                amount_minor=sign * entry_amount,
                currency=entry_currency,
                reference=_remittance_text(tx) or _text(entry, "AddtlNtryInf"),
                payer_name=_party_name(tx),
                payer_account=_party_account(tx),
                bank_reference=bank_ref,
            )
        )
    return ParsedStatement("camt053", statement_id, account, content_hash(data), lines)


# ----------------------------------------------------------------------------- MT940

_MT940_TAG = re.compile(r"^:(\d{2}[A-Z]?):")
_SEPA_FIELD = re.compile(r"\?(\d{2})")


def _mt940_details(text: str) -> tuple[str, str, str]:
    """(remittance text, payer name, payer account) from a :86: field."""
    flat = text.replace("\r", "").replace("\n", "")
    if "?" not in flat:
        return flat.strip(), "", ""
    pieces = _SEPA_FIELD.split(flat)
    fields: dict[int, str] = {}
    for code, value in zip(pieces[1::2], pieces[2::2], strict=False):
        fields[int(code)] = fields.get(int(code), "") + value
    purpose = "".join(fields.get(n, "") for n in [*range(20, 30), *range(60, 64)])
    name = (fields.get(32, "") + fields.get(33, "")).strip()
    return purpose.strip(), name, normalize_account(fields.get(31, ""))


def _mt940_line_of(lines: list[str], value: str) -> int:
    for number, line in enumerate(lines, start=1):
        if value and value.splitlines()[0] in line:
            return number
    return 0


def parse_mt940(data: bytes) -> ParsedStatement:
    import mt940

    text = _decode(data).replace("\r\n", "\n")
    lines = text.split("\n")
    first = next((n for n, line in enumerate(lines, 1) if line.strip()), 1)
    if not _MT940_TAG.match(lines[first - 1].strip()):
        raise StatementRefused(f"line {first}", "an MT940 file starts with a :20: tag")
    positions: list[int] = []  # file line number of every :61:
    for number, line in enumerate(lines, start=1):
        if line.startswith(":61:"):
            positions.append(number)
    # Keep :86: raw: its SEPA sub-fields (?20 purpose, ?31 IBAN, ?32 name) are read here.
    transactions = mt940.models.Transactions(processors={"post_transaction_details": []})
    try:
        transactions.parse(text)
    except RuntimeError as exc:
        value = exc.args[2] if len(exc.args) > 2 else ""
        number = _mt940_line_of(lines, str(value))
        where = f"line {number}" if number else "MT940 file"
        raise StatementRefused(where, f"cannot read {str(value)[:60]!r}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StatementRefused("MT940 file", f"cannot read it ({exc})") from None
    reference = str(transactions.data.get("transaction_reference") or "")
    number_part = str(transactions.data.get("statement_number") or "")
    if not reference:
        raise StatementRefused("line 1", "missing the :20: transaction reference")
    if len(positions) != len(transactions.transactions):
        raise StatementRefused("MT940 file", "a :61: statement line could not be read")
    account = normalize_account(str(transactions.data.get("account_identification") or ""))
    result: list[ParsedLine] = []
    for position, tx in zip(positions, transactions.transactions, strict=True):
        data_ = tx.data
        where = f"line {position}"
        amount = data_.get("amount")
        if amount is None:
            raise StatementRefused(where, "missing amount")
        code = str(data_.get("currency") or getattr(amount, "currency", "") or "")
        minor = to_minor(Decimal(amount.amount), code, where)
        reference_text, name, payer_account = _mt940_details(
            str(data_.get("transaction_details") or "")
        )
        customer_ref = str(data_.get("customer_reference") or "")
        if customer_ref and customer_ref.upper() != "NONREF":
            reference_text = f"{reference_text} {customer_ref}".strip()
        value_date = data_.get("date")
        if value_date is None:
            raise StatementRefused(where, "missing value date")
        result.append(
            ParsedLine(
                line_no=position,
                value_date=date(value_date.year, value_date.month, value_date.day),
                amount_minor=minor,
                currency=currency(code).code,
                reference=reference_text,
                payer_name=name,
                payer_account=payer_account,
                bank_reference=str(data_.get("bank_reference") or ""),
            )
        )
    statement_id = f"{reference}/{number_part}" if number_part else reference
    return ParsedStatement("mt940", statement_id, account, content_hash(data), result)


# ----------------------------------------------------------------------------- BAI2

_BAI2_CODES = {"01", "02", "03", "16", "49", "88", "98", "99"}


def _bai2_date(text: str, where: str) -> date:
    try:
        return datetime.strptime(text.strip(), "%y%m%d").date()  # noqa: DTZ007 (a date)
    except ValueError:
        raise StatementRefused(where, f"date {text!r} is not YYMMDD") from None


def parse_bai2(data: bytes) -> ParsedStatement:
    from bai2 import bai2
    from bai2.exceptions import IntegrityException, NotSupportedYetException, ParsingException

    text = _decode(data)
    raw_lines = text.splitlines()
    numbered = [(n, line.strip()) for n, line in enumerate(raw_lines, 1) if line.strip()]
    for number, line in numbered:
        if line[:2] not in _BAI2_CODES or (len(line) > 2 and line[2] != ","):
            raise StatementRefused(f"line {number}", "not a BAI2 record (01, 02, 03, 16, 88...)")
    if not numbered or not numbered[0][1].startswith("01,"):
        raise StatementRefused("line 1", "a BAI2 file starts with a 01 file header")
    detail_lines = [n for n, line in numbered if line.startswith("16,")]
    try:
        parsed = bai2.parse_from_lines([line for _, line in numbered])
    except IntegrityException as exc:
        raise StatementRefused("BAI2 trailer", f"control totals do not match ({exc})") from None
    except (ParsingException, NotSupportedYetException) as exc:
        raise StatementRefused("BAI2 file", str(exc)) from None
    except (ValueError, KeyError, IndexError, TypeError, StopIteration) as exc:
        raise StatementRefused("BAI2 file", f"cannot read it ({exc!r})") from None
    header = parsed.header
    file_id = f"{header.sender_id}/{header.creation_date}/{header.file_id}"
    lines: list[ParsedLine] = []
    position = iter(detail_lines)
    accounts: list[str] = []
    for group in parsed.children:
        as_of = group.header.as_of_date
        group_currency = group.header.currency or "USD"
        for account in group.children:
            number = str(account.header.customer_account_number or "")
            accounts.append(number)
            code = account.header.currency or group_currency
            for detail in account.children:
                line_no = next(position, 0)
                where = f"line {line_no}"
                if detail.amount is None:
                    raise StatementRefused(where, "missing amount")
                cur = currency(code)
                # BAI2 amounts are integers in the currency's minor units already.
                minor = int(detail.amount)
                transaction = getattr(detail.type_code, "transaction", None)
                credit = getattr(transaction, "name", "credit") == "credit"
                value_date = as_of if isinstance(as_of, date) else _bai2_date(str(as_of), where)
                lines.append(
                    ParsedLine(
                        line_no=line_no,
                        value_date=value_date,
                        amount_minor=minor if credit else -minor,
                        currency=cur.code,
                        reference=str(detail.text or "").strip(),
                        payer_name="",
                        payer_account="",
                        bank_reference=str(detail.bank_reference or ""),
                    )
                )
    return ParsedStatement(
        "bai2", file_id, normalize_account(",".join(accounts))[:64], content_hash(data), lines
    )


# ----------------------------------------------------------------------------- CSV


def check_mapping(spec: CsvMappingSpec) -> dict[str, str]:
    """Field errors of a mapping (empty when it is usable)."""
    errors: dict[str, str] = {}
    unknown = sorted(set(spec.columns) - set(CSV_FIELDS))
    if unknown:
        errors["columns"] = f"unknown field(s): {', '.join(unknown)}"
    if "value_date" not in spec.columns:
        errors["value_date"] = "Map the value date column."
    if spec.sign_convention not in SIGN_CONVENTIONS:
        errors["sign_convention"] = "Choose a sign convention."
    elif spec.sign_convention == "separate_columns":
        if "credit" not in spec.columns:
            errors["credit"] = "Map the credit (money in) column."
    elif "amount" not in spec.columns:
        errors["amount"] = "Map the amount column."
    if spec.decimal_separator not in {".", ","}:
        errors["decimal_separator"] = "Use . or , as the decimal separator."
    if len(spec.delimiter) != 1:
        errors["delimiter"] = "The delimiter is one character."
    if "currency" not in spec.columns:
        try:
            currency(spec.default_currency or "")
        except (ValueError, TypeError):
            errors["default_currency"] = "Map a currency column or give a default currency."
    try:
        datetime.strptime("2026-01-02", "%Y-%m-%d").strftime(spec.date_format)  # noqa: DTZ007
        if "%" not in spec.date_format:
            raise ValueError
    except ValueError:
        errors["date_format"] = "Use a strftime pattern such as %d.%m.%Y."
    return errors


def _csv_amount(text: str, spec: CsvMappingSpec) -> str:
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "").replace("'", "")
    if spec.decimal_separator == ",":
        cleaned = cleaned.replace(".", "").replace(",", ".")
    else:
        cleaned = cleaned.replace(",", "")
    return cleaned


def parse_csv(data: bytes, spec: CsvMappingSpec) -> ParsedStatement:
    errors = check_mapping(spec)
    if errors:
        raise StatementRefused("mapping", "; ".join(errors.values()))
    text = _decode(data)
    reader: Iterator[list[str]] = csv.reader(io.StringIO(text), delimiter=spec.delimiter)
    rows = list(reader)
    header_row: list[str] = []
    start = 1
    if spec.has_header:
        if not rows:
            raise StatementRefused("line 1", "missing the header row")
        header_row = [h.strip() for h in rows[0]]
        rows = rows[1:]
        start = 2
    index: dict[str, int] = {}
    for our_field, column in spec.columns.items():
        column = str(column).strip()
        if column.isdigit():
            index[our_field] = int(column) - 1
        elif column in header_row:
            index[our_field] = header_row.index(column)
        else:
            raise StatementRefused("line 1", f"column {column!r} ({our_field}) is not in the file")
    lines: list[ParsedLine] = []
    statement_ids: set[str] = set()
    for number, row in enumerate(rows, start=start):
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {number}"

        def cell(name: str, row: list[str] = row, where: str = where) -> str:
            if name not in index:
                return ""
            position = index[name]
            if position >= len(row):
                raise StatementRefused(where, f"has no column {position + 1} ({name})")
            return row[position].strip()

        code = cell("currency") or spec.default_currency
        try:
            value_date = datetime.strptime(cell("value_date"), spec.date_format).date()  # noqa: DTZ007
        except ValueError:
            raise StatementRefused(
                where, f"date {cell('value_date')!r} does not match {spec.date_format}"
            ) from None
        if spec.sign_convention == "separate_columns":
            credit_text, debit_text = cell("credit"), cell("debit")
            if credit_text and debit_text:
                raise StatementRefused(where, "both credit and debit are filled")
            if not credit_text and not debit_text:
                raise StatementRefused(where, "no amount")
            if credit_text:
                minor = to_minor(_csv_amount(credit_text, spec), code, where)
            else:
                minor = -abs(to_minor(_csv_amount(debit_text, spec), code, where))
        else:
            raw = cell("amount")
            if not raw:
                raise StatementRefused(where, "no amount")
            minor = to_minor(_csv_amount(raw, spec), code, where)
            if spec.sign_convention == "minus_is_credit":
                minor = -minor
        if cell("statement_id"):
            statement_ids.add(cell("statement_id"))
        lines.append(
            ParsedLine(
                line_no=number,
                value_date=value_date,
                amount_minor=minor,
                currency=currency(code).code,
                reference=cell("reference"),
                payer_name=cell("payer_name"),
                payer_account=normalize_account(cell("payer_account")),
                bank_reference=cell("bank_reference"),
            )
        )
    if not lines:
        raise StatementRefused("file", "no statement lines")
    digest = content_hash(data)
    statement_id = ",".join(sorted(statement_ids)) or f"sha256:{digest[:16]}"
    return ParsedStatement("csv", statement_id[:120], "", digest, lines)


def parse(fmt: str, data: bytes, mapping: CsvMappingSpec | None = None) -> ParsedStatement:
    """Parse ``data`` in format ``fmt`` (a key of ``FORMATS``)."""
    if fmt == "csv":
        if mapping is None:
            raise StatementRefused("mapping", "choose a CSV column mapping")
        statement = parse_csv(data, mapping)
    elif fmt == "camt053":
        statement = parse_camt053(data)
    elif fmt == "mt940":
        statement = parse_mt940(data)
    elif fmt == "bai2":
        statement = parse_bai2(data)
    else:
        raise StatementRefused("format", f"unknown format {fmt!r}")
    if not statement.lines:
        raise StatementRefused("file", "the statement has no entries")
    return statement

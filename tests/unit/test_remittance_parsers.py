"""Statement parsers (pure): what each format yields, and every refusal names the line
(or XML element) and the reason."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.remittance.parsers import CsvMappingSpec, StatementRefused, check_mapping, parse

DATA = Path(__file__).resolve().parent.parent / "data" / "remittance"

CAMT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{v}">
 <BkToCstmrStmt><Stmt><Id>S-1</Id>
  <Acct><Id><IBAN>DE02 1203 0000 0000 2020 51</IBAN></Id></Acct>
  <Ntry><Amt Ccy="EUR">1190.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
   <BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-21</Dt></ValDt>
   <AcctSvcrRef>BANK-1</AcctSvcrRef>
   <NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>
    <RltdPties>{party}<DbtrAcct><Id><IBAN>DE12500105170648489890</IBAN></Id></DbtrAcct></RltdPties>
    <RmtInf><Ustrd>INV-DE-2026-000123</Ustrd><Ustrd>thanks</Ustrd></RmtInf>
   </TxDtls></NtryDtls></Ntry>
  <Ntry><Amt Ccy="EUR">300.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-11-20</Dt></BookgDt>
   <NtryDtls>
    <TxDtls><Amt Ccy="EUR">100.00</Amt>
     <RmtInf><Strd><CdtrRefInf><Ref>RF18539007547034</Ref></CdtrRefInf></Strd></RmtInf></TxDtls>
    <TxDtls><Amt Ccy="EUR">200.00</Amt><RmtInf><Ustrd>INV-DE-2026-000124</Ustrd></RmtInf></TxDtls>
   </NtryDtls></Ntry>
  <Ntry><Amt Ccy="EUR">5.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><BookgDt><Dt>2026-11-20</Dt></BookgDt>
   <AddtlNtryInf>Fees</AddtlNtryInf></Ntry>
 </Stmt></BkToCstmrStmt></Document>"""


@pytest.mark.parametrize(
    ("version", "party"),
    [
        ("02", "<Dbtr><Nm>Acme GmbH</Nm></Dbtr>"),
        ("08", "<Dbtr><Pty><Nm>Acme GmbH</Nm></Pty></Dbtr>"),
    ],
)
def test_camt053_entries_batches_and_debits(version, party) -> None:
    s = parse("camt053", CAMT.format(v=version, party=party).encode())
    assert (s.format, s.statement_id, s.bank_account) == (
        "camt053",
        "S-1",
        "DE02120300000000202051",
    )
    first, batch_a, batch_b, fee = s.lines
    assert first.amount_minor == 119000
    assert first.value_date == date(2026, 11, 21)
    assert first.reference == "INV-DE-2026-000123 thanks"
    assert (first.payer_name, first.payer_account) == ("Acme GmbH", "DE12500105170648489890")
    assert first.bank_reference == "BANK-1"
    assert (batch_a.amount_minor, batch_a.reference) == (10000, "RF18539007547034")
    assert (batch_b.amount_minor, batch_b.reference) == (20000, "INV-DE-2026-000124")
    assert (fee.amount_minor, fee.reference) == (-500, "Fees")


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        (("1190.00", "11,90"), "<Ntry> #1", "not a number"),
        (("1190.00", "1190.001"), "<Ntry> #1", "more decimals than EUR"),
        (('Ccy="EUR">1190', 'Ccy="XXQ">1190'), "<Ntry> #1", "unknown currency"),
        (("<CdtDbtInd>DBIT", "<CdtDbtInd>BOTH"), "<Ntry> #3", "CRDT or DBIT"),
        (("200.00</Amt>", "250.00</Amt>"), "<Ntry> #2", "do not add up"),
        (("<Id>S-1</Id>", ""), "<Stmt>", "missing <Id>"),
        (("</Ntry>\n  <Ntry>", "</Ntry>\n  <Ntry"), "line 12", "malformed"),
    ],
)
def test_camt053_refusals_name_the_element(change, where, reason) -> None:
    text = CAMT.format(v="02", party="").replace(*change, 1)
    with pytest.raises(StatementRefused) as refused:
        parse("camt053", text.encode())
    assert refused.value.where.startswith(where.split(",")[0])
    assert reason in refused.value.reason


def test_camt053_refuses_entity_expansion() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><Document>&a;</Document>'
    with pytest.raises(StatementRefused, match="forbidden"):
        parse("camt053", bomb)


def test_camt053_reads_the_same_through_every_xml_route() -> None:
    """A plain file (one default namespace) is read by the C parser with the namespace
    blanked out; prefixed namespaces are renamed after parsing; a file with a DTD goes
    through defusedxml. All three give the same statement."""
    plain = CAMT.format(v="08", party="<Dbtr><Nm>Acme GmbH</Nm></Dbtr>")
    prefixed = (
        plain.replace("<Document xmlns=", "<c:Document xmlns:c=")
        .replace("</Document>", "</c:Document>")
        .replace("<BkToCstmrStmt>", "<c:BkToCstmrStmt>")
        .replace("</BkToCstmrStmt>", "</c:BkToCstmrStmt>")
    )
    with_xsi = plain.replace(
        "<Document ", '<Document xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    )
    with_dtd = plain.replace("?>\n", "?>\n<!DOCTYPE Document>\n", 1)
    expected = parse("camt053", plain.encode())
    assert len(expected.lines) == 4
    for variant in (prefixed, with_xsi, with_dtd):
        assert variant != plain
        parsed = parse("camt053", variant.encode())
        assert parsed.lines == expected.lines
        assert parsed.statement_id == expected.statement_id
    # an entity reference without a DTD declaring it is malformed, not expanded
    with pytest.raises(StatementRefused, match="malformed"):
        parse("camt053", plain.replace("thanks", "&a;").encode())


def test_bai2_and_its_refusals() -> None:
    data = (DATA / "sample.bai2").read_bytes()
    s = parse("bai2", data)
    assert [(line.amount_minor, line.reference) for line in s.lines] == [
        (119000, "INV-US-2026-000001 ACME"),
        (-5000, "FEE"),
    ]
    assert s.lines[0].line_no == 4
    with pytest.raises(StatementRefused) as refused:
        parse("bai2", data.replace(b"16,475", b"17,475"))
    assert refused.value.where == "line 5"
    with pytest.raises(StatementRefused, match="control totals"):
        parse("bai2", data.replace(b"49,424000", b"49,424001"))


MT940 = (
    ":20:STMT-0001\n:25:DE89370400440532013000\n:28C:00001/001\n:60F:C261120EUR1000,00\n"
    ":61:2611201120CR1190,00NTRFNONREF//B123\n"
    ":86:166?00SEPA-UEBERWEISUNG?20INV-DE-2026-000123?21THANKS?32ACME GMBH"
    "?31DE12500105170648489890\n"
    ":61:2611201120DR50,00NTRFNONREF\n:86:FEES\n:62F:C261120EUR2140,00\n"
)


def test_mt940_sepa_fields_and_refusal() -> None:
    s = parse("mt940", MT940.encode())
    assert s.statement_id == "STMT-0001/00001"
    credit, debit = s.lines
    assert (credit.line_no, credit.amount_minor, credit.payer_name) == (5, 119000, "ACME GMBH")
    assert credit.reference == "INV-DE-2026-000123THANKS"
    assert credit.payer_account == "DE12500105170648489890"
    assert (debit.amount_minor, debit.reference) == (-5000, "FEES")
    with pytest.raises(StatementRefused) as refused:
        parse("mt940", MT940.replace(":61:2611201120DR50,00NTRFNONREF", ":61:junk").encode())
    assert refused.value.where == "line 7"
    with pytest.raises(StatementRefused, match="starts with"):
        parse("mt940", b"hello\n:20:X\n")


SPEC = CsvMappingSpec(
    columns={
        "value_date": "Date",
        "credit": "In",
        "debit": "Out",
        "reference": "Text",
        "payer_account": "IBAN",
    },
    delimiter=";",
    date_format="%d.%m.%Y",
    decimal_separator=",",
    sign_convention="separate_columns",
    default_currency="EUR",
)


def test_csv_with_a_saved_mapping() -> None:
    data = (
        b"Date;In;Out;Text;IBAN\n"
        b"20.11.2026;1.234,50;;INV-DE-2026-000123;DE12 5001 0517 0648 4898 90\n"
        b"21.11.2026;;12,00;Fee;\n\n"
    )
    s = parse("csv", data, SPEC)
    assert [(line.line_no, line.amount_minor) for line in s.lines] == [(2, 123450), (3, -1200)]
    assert s.lines[0].payer_account == "DE12500105170648489890"
    assert s.statement_id.startswith("sha256:")
    signed = CsvMappingSpec(
        columns={"value_date": "1", "amount": "2", "currency": "3"},
        has_header=False,
        sign_convention="minus_is_credit",
    )
    t = parse("csv", b"2026-11-20,-10.00,JPY\n", signed)
    assert t.lines[0].amount_minor == 10  # JPY has no minor unit: 10 yen


@pytest.mark.parametrize(
    ("row", "where", "reason"),
    [
        ("2026-11-20;1,00;;x;", "line 2", "does not match %d.%m.%Y"),
        ("20.11.2026;1,00;2,00;x;", "line 2", "both credit and debit"),
        ("20.11.2026;1,005;;x;", "line 2", "more decimals"),
        ("20.11.2026", "line 2", "has no column"),
    ],
)
def test_csv_refusals(row, where, reason) -> None:
    with pytest.raises(StatementRefused) as refused:
        parse("csv", f"Date;In;Out;Text;IBAN\n{row}\n".encode(), SPEC)
    assert refused.value.where == where
    assert reason in refused.value.reason


def test_csv_mapping_checks() -> None:
    assert check_mapping(SPEC) == {}
    bad = CsvMappingSpec(columns={"amount": "A", "colour": "B"}, sign_convention="plus_is_credit")
    errors = check_mapping(bad)
    assert set(errors) >= {"columns", "value_date", "default_currency"}
    with pytest.raises(StatementRefused, match="is not in the file"):
        parse("csv", b"Datum;In\n1;2\n", SPEC)


def test_empty_and_unknown_format() -> None:
    with pytest.raises(StatementRefused, match="empty"):
        parse("mt940", b"   ")
    with pytest.raises(StatementRefused, match="unknown format"):
        parse("qif", b"x")

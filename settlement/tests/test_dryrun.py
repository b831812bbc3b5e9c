"""The dry run's CSV parsing and rendering (pure: no database, no Django)."""

from __future__ import annotations

import json
import re

import pytest

from settlement.domain import GridRules, MeterUsage, settle_interval
from settlement.dryrun import ReadingsError, readings_parse, settlement_as_dict, settlement_as_json, settlement_as_table

SEED_CSV = "meter,import_wh,export_wh\nCarlos,3000,0\nDanny,2000,0\nAngel,0,3000\nBennie,0,2500\n"
SEED_USAGES = [
    MeterUsage("Carlos", 3000, 0),
    MeterUsage("Danny", 2000, 0),
    MeterUsage("Angel", 0, 3000),
    MeterUsage("Bennie", 0, 2500),
]


def test_the_seed_csv_parses_in_file_order():
    assert readings_parse(SEED_CSV) == SEED_USAGES
    assert readings_parse(SEED_CSV.encode()) == SEED_USAGES


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffmeter,import_wh,export_wh\r\nCarlos,3000,0\r\n",  # Excel: BOM and CRLF
        "export_wh,meter,import_wh\n0,Carlos,3000\n",  # columns in any order
        " meter , import_wh , export_wh \n Carlos , 3000 , 0 \n",  # spaces trimmed
        '\n\nmeter,import_wh,export_wh\n\n"Carlos",3000,0\n   \n\n',  # blank lines, quoting
    ],
)
def test_common_csv_variants_are_accepted(text):
    assert readings_parse(text) == [MeterUsage("Carlos", 3000, 0)]
    assert readings_parse(text.encode()) == [MeterUsage("Carlos", 3000, 0)]


def test_a_header_without_rows_is_an_empty_interval():
    assert readings_parse("meter,import_wh,export_wh\n") == []


def test_meter_ids_may_hold_commas_and_unicode_when_quoted():
    usages = readings_parse('meter,import_wh,export_wh\n"Zoë, flat 2",1,0\n')
    assert usages == [MeterUsage("Zoë, flat 2", 1, 0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty file"),
        ("\n\n", "line 1: empty file"),
        ("meter,import_wh\nA,1\n", "line 1: missing column export_wh"),
        ("meter,export_wh\nA,1\n", "line 1: missing column import_wh"),
        ("m,import_wh,export_wh\nA,1,0\n", "line 1: unknown column 'm'"),
        ("meter,import_wh,export_wh,note\nA,1,0,x\n", "line 1: unknown column 'note'"),
        ("meter,import_wh,import_wh,export_wh\nA,1,1,0\n", "line 1: column 'import_wh' appears twice"),
        ("Carlos,3000,0\n", "line 1: unknown column 'Carlos'"),  # no header at all
        ("meter,import_wh,export_wh\nA,1,0\nB,1\n", "line 3: expected 3 fields like the header, got 2"),
        ("meter,import_wh,export_wh\nA,1,0,9\n", "line 2: expected 3 fields like the header, got 4"),
        ("meter,import_wh,export_wh\nA,1.5,0\n", "line 2: import_wh must be a whole number of Wh"),
        ("meter,import_wh,export_wh\nA,0,abc\n", "line 2: export_wh must be a whole number of Wh"),
        ("meter,import_wh,export_wh\nA,1e3,0\n", "line 2: import_wh must be a whole number"),
        ("meter,import_wh,export_wh\nA,+5,0\n", "line 2: import_wh must be a whole number"),
        ("meter,import_wh,export_wh\nA,1_000,0\n", "line 2: import_wh must be a whole number"),
        ("meter,import_wh,export_wh\nA,\u0663,0\n", "line 2: import_wh must be a whole number"),  # Arabic 3
        ("meter,import_wh,export_wh\nA,0,-2\n", "line 2: export_wh is negative"),
        ("meter,import_wh,export_wh\nA,,0\n", "line 2: import_wh is empty"),
        ("meter,import_wh,export_wh\n,1,0\n", "line 2: empty meter id"),
        ("meter,import_wh,export_wh\n  ,1,0\n", "line 2: empty meter id"),
        ("meter,import_wh,export_wh\nA,1,0\n,,\n", "line 3: empty meter id"),
        ("meter,import_wh,export_wh\nA,1,0\n\nB,2,0\nA,3,0\n", "line 5: meter 'A' appears twice (first on line 2)"),
        ("meter,import_wh,export_wh\nA,9223372036854775808,0\n", "line 2: import_wh is too large"),
        ("meter,import_wh,export_wh\nA," + "9" * 5000 + ",0\n", "line 2: import_wh is too large"),
        ('meter,import_wh,export_wh\n"A,1,0\n', "line 2: not valid CSV"),
        ('meter,import_wh,export_wh\n"A"x,1,0\n', "line 2: not valid CSV"),
        ("meter,import_wh,export_wh\nA\x00,1,0\n", "line 2: meter id 'A\\x00' holds control characters"),
        ("meter,import_wh,export_wh\nA\tB,1,0\n", "line 2: meter id 'A\\tB' holds control characters"),
    ],
)
def test_malformed_csv_is_refused_naming_the_line(text, message):
    with pytest.raises(ReadingsError, match="^" + re.escape(message)):
        readings_parse(text)


def test_bytes_that_are_not_utf8_are_refused_naming_the_line():
    data = b"meter,import_wh,export_wh\nA,1,0\nB\xff,2,0\n"
    with pytest.raises(ReadingsError, match=r"^line 3: not UTF-8 text"):
        readings_parse(data)


def test_the_largest_storable_value_is_accepted():
    assert readings_parse("meter,import_wh,export_wh\nA,9223372036854775807,0\n") == [
        MeterUsage("A", 9_223_372_036_854_775_807, 0)
    ]


def test_the_json_document_has_exactly_the_documented_keys_in_order():
    result = settle_interval(readings_parse(SEED_CSV), GridRules())
    document = json.loads(settlement_as_json(result))

    assert list(document) == [
        "lines",
        "pool_uk",
        "fee_uk",
        "credited_uk",
        "carry_out_uk",
        "import_wh",
        "export_wh",
        "loss_wh",
        "loss_bp",
        "alerts",
    ]
    assert document == settlement_as_dict(result)
    assert document["lines"][0] == {
        "meter": "Angel",
        "import_wh": 0,
        "export_wh": 3000,
        "debit_uk": 0,
        "credit_uk": 2_721_818,
    }
    assert [line["meter"] for line in document["lines"]] == ["Angel", "Bennie", "Carlos", "Danny"]


def test_no_export_renders_a_null_loss_bp_and_the_alert():
    result = settle_interval([MeterUsage("H-1", 500, 0)], GridRules())
    document = json.loads(settlement_as_json(result))
    assert (document["loss_bp"], document["alerts"], document["carry_out_uk"]) == (None, ["no_export"], 490_000)


def test_the_table_shows_coins_with_six_decimals_and_kwh_with_three():
    table = settlement_as_table(settle_interval(readings_parse(SEED_CSV), GridRules()))
    lines = table.splitlines()

    assert lines[0].split() == ["meter", "import", "kWh", "export", "kWh", "debit", "k", "credit", "k"]
    assert lines[1].split() == ["Angel", "0.000", "3.000", "0.000000", "2.721818"]
    assert lines[2].split() == ["Bennie", "0.000", "2.500", "0.000000", "2.268182"]
    assert lines[3].split() == ["Carlos", "3.000", "0.000", "3.000000", "0.000000"]
    assert "pool         5.000000 k" in lines
    assert "fee          0.010000 k" in lines
    assert "credited     4.990000 k" in lines
    assert "carry out    0.000000 k" in lines
    assert "loss         0.500 kWh (909 bp)" in lines
    assert "alerts       none" in lines

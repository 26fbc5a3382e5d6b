"""Resource quantities: exact parsing, unit conversions and canonical text."""

from decimal import Decimal

import pytest

from apiclient.quantity import cpu_millis, format_quantity, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Decimal(1)),
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(1610612736)),
        ("2k", Decimal(2000)),
        ("3M", Decimal(3_000_000)),
        ("1E", Decimal(10**18)),
        ("1Ei", Decimal(2**60)),
        ("250u", Decimal("0.00025")),
        ("7n", Decimal("7e-9")),
        ("1e3", Decimal(1000)),
        ("1.5E-3", Decimal("0.0015")),
        ("-2m", Decimal("-0.002")),
        ("+4", Decimal(4)),
        (3, Decimal(3)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "1Kb", "1kk", "1 Gi", "Gi", "1.2.3", "e3", "1e", "--1"]
)
def test_invalid_quantity_names_the_text(text):
    with pytest.raises(ValueError, match="not a quantity") as caught:
        parse_quantity(text)
    assert repr(text) in str(caught.value)


def test_cpu_and_memory_conversions_round_up():
    assert cpu_millis("250m") == 250
    assert cpu_millis("2") == 2000
    assert cpu_millis("0.5m") == 1
    assert memory_bytes("128Mi") == 134217728
    assert memory_bytes("1k") == 1000
    assert memory_bytes("0.5") == 1


@pytest.mark.parametrize(
    ("value", "binary", "expected"),
    [
        ("1000m", False, "1"),
        ("0.1", False, "100m"),
        ("1500", False, "1500"),
        ("2000", False, "2k"),
        (1073741824, True, "1Gi"),
        (1536, True, "1536"),
        (1536 * 1024, True, "1536Ki"),
        ("1000", True, "1k"),
        (0, False, "0"),
        ("1e-10", False, "1n"),
    ],
)
def test_format_quantity(value, binary, expected):
    assert format_quantity(value, binary=binary) == expected
    assert parse_quantity(expected) == parse_quantity(value) or expected == "1n"

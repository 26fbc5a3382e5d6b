"""Kubernetes resource quantities ("100m", "1.5Gi", "2e3") as exact Decimals.

Quantities are compared and summed by the scheduler and the node agent, so they are never
floats: `parse_quantity` returns a `Decimal` with the exact value. Conversions to integer
units round up, like `Quantity.MilliValue()` / `Quantity.Value()`, so a request of
"0.5m" CPU still reserves one millicore.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["cpu_millis", "format_quantity", "memory_bytes", "parse_quantity"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?$"
)

QuantityLike = str | int | float | Decimal


def parse_quantity(text: QuantityLike) -> Decimal:
    """The exact value of a Kubernetes quantity; ValueError naming the text if invalid."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a quantity")
    if isinstance(text, Decimal):
        return text
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"{text!r} is not a quantity")
        return Decimal(repr(text))
    match = _QUANTITY_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{text!r} is not a quantity (expected a number with an optional suffix "
            "n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like 1e3)"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a quantity") from None
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL[suffix]


def cpu_millis(quantity: QuantityLike) -> int:
    """CPU in millicores, rounded up ("250m" -> 250, "1" -> 1000)."""
    return math.ceil(parse_quantity(quantity) * 1000)


def memory_bytes(quantity: QuantityLike) -> int:
    """Bytes, rounded up ("1Ki" -> 1024, "1k" -> 1000)."""
    return math.ceil(parse_quantity(quantity))


def format_quantity(value: QuantityLike, *, binary: bool = False) -> str:
    """Canonical text for a value: the largest suffix that keeps an integer mantissa.

    `binary=True` prefers Ki/Mi/Gi/... (memory) when the value is a whole multiple of 1024;
    otherwise decimal suffixes are used, down to "n" for tiny fractions.
    """
    number = parse_quantity(value)
    if number == 0:
        return "0"
    if binary and number == number.to_integral_value():
        for suffix, factor in reversed(_BINARY.items()):
            if number % factor == 0:
                return f"{int(number // factor)}{suffix}"
    for suffix, factor in sorted(_DECIMAL.items(), key=lambda item: item[1], reverse=True):
        mantissa = number / factor
        if mantissa == mantissa.to_integral_value():
            return f"{int(mantissa)}{suffix}"
    # Finer than a nanounit: round up to whole nanounits, as Kubernetes does.
    return f"{math.ceil(number / _DECIMAL['n'])}n"

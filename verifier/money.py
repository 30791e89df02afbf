"""USDC amounts: integers of base units in Python, exact decimals (NUMERIC) at the edges.

USDC has 6 decimals on every chain this product watches; nothing else in the program states it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

USDC_DECIMALS = 6
BASE_UNITS = 10**USDC_DECIMALS


def usdc_to_base_units(text: str) -> int:
    """'0.001' -> 1000. Exact: refuses more than 6 decimals, negatives and non-numbers."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a USDC amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{text!r} is not a non-negative USDC amount")
    return usdc_decimal_to_base_units(amount)


def base_units_to_usdc(units: int) -> Decimal:
    """Exact decimal USDC for a NUMERIC column: 1000 -> Decimal('0.001000'), at any size."""
    return Decimal(f"{units}E-{USDC_DECIMALS}")


def usdc_decimal_to_base_units(amount: Decimal) -> int:
    """The inverse, exact at any size: Decimal('1.5') -> 1500000."""
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{amount} is not a finite amount")
    value = int("".join(map(str, digits)) or "0")
    shift = exponent + USDC_DECIMALS
    if shift >= 0:
        value *= 10**shift
    else:
        value, rest = divmod(value, 10**-shift)
        if rest:
            raise ValueError(f"{amount} has more than {USDC_DECIMALS} decimals")
    return -value if sign else value

"""Minor units of the currencies Stripe charges, and money as people read it.

Every amount in this project is an integer in the unit Stripe's API takes for that currency
(`amount_minor`), and is sent to Stripe unchanged. Showing it therefore divides by 10 to the
power of that unit's exponent, never by a fixed 100: JPY 1000 is "1,000 JPY", BHD 1234 is
"1.234 BHD".

No maintained currency library is installed (no Babel, py-moneyed or pycountry in the lock),
so the exponents are this short table, from Stripe's "Supported currencies" page
(https://docs.stripe.com/currencies). Currencies not listed have two decimals, as ISO 4217
gives for nearly all of them. Where Stripe's API unit differs from ISO 4217 the API wins,
because that is the unit stored and charged: ISK has no minor unit in ISO 4217 but Stripe
takes it with two decimals (amounts multiples of 100), so ISK shows two decimals too.
"""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal currencies: the amount is whole units (JPY 500 is 500 yen).
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
# Stripe's three-decimal currencies. Stripe also requires their last digit to be 0 in
# payments (5.124 KWD must be charged as 5.120 or 5.130).
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def minor_unit_exponent(currency: str) -> int:
    """How many decimals one minor unit of `currency` is: 0 for JPY, 2 for USD, 3 for BHD."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount_minor: int, currency: str) -> str:
    """An amount in minor units as money: (1234, "USD") -> "$12.34", (1000, "JPY") ->
    "1,000 JPY", (1234, "BHD") -> "1.234 BHD"."""
    exponent = minor_unit_exponent(currency)
    value = Decimal(abs(amount_minor)).scaleb(-exponent)
    text = f"{value:,.{exponent}f}"
    sign = "-" if amount_minor < 0 else ""
    symbol = SYMBOLS.get(currency.upper(), "")
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"

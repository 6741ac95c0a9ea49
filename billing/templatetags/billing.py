from decimal import ROUND_HALF_UP, Decimal

from django import template

from billing.currencies import format_money

register = template.Library()


@register.simple_tag
def money(amount_minor, currency: str) -> str:
    """Minor units as money in the currency's own decimals: {% money 1234 "USD" %} -> $12.34,
    {% money 1000 "JPY" %} -> 1,000 JPY. A unit price can hold a fraction of a minor unit;
    it is shown to the nearest one, halves up."""
    whole = int(Decimal(str(amount_minor)).to_integral_value(rounding=ROUND_HALF_UP))
    return format_money(whole, currency)


@register.filter
def percent(value) -> str:
    """A percentage as people write it: 10 -> "10%", 7.5 -> "7.5%" (never "10.0%")."""
    number = Decimal(str(value)).quantize(Decimal("0.1"))
    text = f"{number:f}".removesuffix(".0")
    return f"{text}%"

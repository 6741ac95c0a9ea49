from decimal import Decimal

from django import template

from billing.pricing import format_money

register = template.Library()


@register.simple_tag
def money(amount_minor, currency: str) -> str:
    """Minor units (cents) as money: {% money 1234 "USD" %} -> $12.34."""
    return format_money(round(amount_minor), currency)


@register.filter
def percent(value) -> str:
    """A percentage as people write it: 10 -> "10%", 7.5 -> "7.5%" (never "10.0%")."""
    number = Decimal(str(value)).quantize(Decimal("0.1"))
    text = f"{number:f}".removesuffix(".0")
    return f"{text}%"

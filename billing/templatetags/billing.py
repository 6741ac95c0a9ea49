from django import template

from billing.pricing import format_money

register = template.Library()


@register.simple_tag
def money(amount_minor, currency: str) -> str:
    """Minor units (cents) as money: {% money 1234 "USD" %} -> $12.34."""
    return format_money(round(amount_minor), currency)

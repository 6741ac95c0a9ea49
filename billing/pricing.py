"""Prices of credits: a typed quantity at its volume tier, packages, and the suggestion of a
better package (seed 000). Pure reads; money is integer minor units plus a currency."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .models import CreditPackage, PriceList

MAX_QUANTITY = 1_000_000


@dataclass(frozen=True)
class Quote:
    quantity: int
    total_minor: int
    list_total_minor: int
    currency: str
    package: CreditPackage | None = None

    @property
    def unit_price_minor(self) -> Decimal:
        return Decimal(self.total_minor) / self.quantity

    @property
    def discount_percent(self) -> Decimal:
        """Percent off the list price, to one decimal."""
        if not self.list_total_minor:
            return Decimal(0)
        off = 100 * (1 - Decimal(self.total_minor) / self.list_total_minor)
        return off.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Suggestion:
    """Need N: N at its own rate, and the next package whose discount beats that rate."""

    exact: Quote
    better: Quote | None

    @property
    def saving_minor(self) -> int:
        """What the better package's credits would cost at the exact rate, less its price."""
        if self.better is None:
            return 0
        at_exact_rate = self.exact.unit_price_minor * self.better.quantity
        return int(at_exact_rate.to_integral_value(rounding=ROUND_HALF_UP)) - (
            self.better.total_minor
        )


def price_list_for(currency: str) -> PriceList | None:
    return PriceList.objects.filter(currency=currency).prefetch_related("tiers", "packages").first()


def quote(*, price_list: PriceList, quantity: int) -> Quote:
    """A typed quantity at the unit price of the highest tier it reaches."""
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValueError(f"Choose between 1 and {MAX_QUANTITY:,} credits.")
    unit = price_list.list_price_minor
    for tier in sorted(price_list.tiers.all(), key=lambda t: t.min_quantity):
        if tier.min_quantity <= quantity:
            unit = tier.unit_price_minor
    return Quote(
        quantity=quantity,
        total_minor=quantity * unit,
        list_total_minor=quantity * price_list.list_price_minor,
        currency=price_list.currency,
    )


def package_quote(*, package: CreditPackage) -> Quote:
    return Quote(
        quantity=package.credits,
        total_minor=package.price_minor,
        list_total_minor=package.credits * package.price_list.list_price_minor,
        currency=package.price_list.currency,
        package=package,
    )


def packages(*, price_list: PriceList) -> list[Quote]:
    return [
        package_quote(package=p)
        for p in sorted(price_list.packages.all(), key=lambda p: p.credits)
        if p.active
    ]


def best_offer(*, price_list: PriceList, quantity: int) -> Quote:
    """ "We calculate the best rate": a package of at least that many credits that costs less
    than the typed quantity wins over it."""
    typed = quote(price_list=price_list, quantity=quantity)
    cheaper = [
        q
        for q in packages(price_list=price_list)
        if q.quantity >= quantity and q.total_minor < typed.total_minor
    ]
    return min(cheaper, key=lambda q: q.total_minor, default=typed)


def suggestion(*, price_list: PriceList, need: int) -> Suggestion:
    exact = quote(price_list=price_list, quantity=need)
    better = next(
        (
            q
            for q in packages(price_list=price_list)
            if q.quantity >= need and q.unit_price_minor < exact.unit_price_minor
        ),
        None,
    )
    return Suggestion(exact=exact, better=better)


def format_money(amount_minor: int, currency: str) -> str:
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency, "")
    value = f"{Decimal(amount_minor) / 100:,.2f}"
    return f"{symbol}{value}" if symbol else f"{value} {currency}"

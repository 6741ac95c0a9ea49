"""Prices of credits: a typed quantity at its volume tier, packages, and the suggestion of a
better package (seed 000). Pure reads; money is integer minor units plus a currency."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .models import CreditPackage, PriceList

# Stripe refuses one charge above this in USD-like (two-decimal) currencies: $999,999.99.
# Every purchasable quantity is derived from it, so nothing is sent that Stripe cannot charge.
STRIPE_MAX_CHARGE_MINOR = 99_999_999
# Credits are counted in 32-bit columns (purchases, lots, holdings): even a free price list
# cannot make one purchase bigger than this.
QUANTITY_CEILING = 2**31 - 1


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


def _bands(price_list: PriceList) -> list[tuple[int, int]]:
    """(first quantity, unit price) of each stretch of quantities, in order: the list price
    from 1, then each tier from its minimum (a tier at 1 replaces the list price)."""
    starts = {1: price_list.list_price_minor}
    for tier in sorted(price_list.tiers.all(), key=lambda t: t.min_quantity):
        starts[tier.min_quantity] = tier.unit_price_minor
    return sorted(starts.items())


def _unit_price(price_list: PriceList, quantity: int) -> int:
    unit = price_list.list_price_minor
    for start, price in _bands(price_list):
        if start <= quantity:
            unit = price
    return unit


def max_quantity(*, price_list: PriceList) -> int:
    """The largest quantity whose total fits in one Stripe charge (0 if not even one does).
    Totals drop where a tier starts, so every stretch is checked, not only the last."""
    bands = _bands(price_list)
    best = 0
    for i, (start, unit) in enumerate(bands):
        end = bands[i + 1][0] - 1 if i + 1 < len(bands) else QUANTITY_CEILING
        top = min(end, STRIPE_MAX_CHARGE_MINOR // unit) if unit else end
        if top >= start:
            best = max(best, top)
    return min(best, QUANTITY_CEILING)


def limit_message(*, price_list: PriceList, limit: int | None = None) -> str:
    """Why a quantity cannot be bought in one go, and what to do instead."""
    if limit is None:
        limit = max_quantity(price_list=price_list)
    most = format_money(STRIPE_MAX_CHARGE_MINOR, price_list.currency)
    if not limit:
        return (
            f"Stripe cannot charge these credits online (at most {most} per payment). "
            "Please contact sales."
        )
    return (
        f"One purchase can hold at most {limit:,} credits: Stripe charges at most {most} per "
        "payment. Split a bigger order into several purchases, or contact sales."
    )


def quote(*, price_list: PriceList, quantity: int) -> Quote:
    """A typed quantity at the unit price of the highest tier it reaches, refused if its total
    is more than Stripe can charge at once."""
    limit = max_quantity(price_list=price_list)
    if quantity < 1:
        raise ValueError(f"Choose between 1 and {limit:,} credits.")
    if quantity > limit:
        raise ValueError(limit_message(price_list=price_list, limit=limit))
    unit = _unit_price(price_list, quantity)
    if quantity * unit > STRIPE_MAX_CHARGE_MINOR:
        # Below the limit yet too dear: only where a tier's lower price brings totals back
        # under the maximum further up.
        raise ValueError(limit_message(price_list=price_list, limit=limit))
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


def package_chargeable(package: CreditPackage) -> bool:
    return package.price_minor <= STRIPE_MAX_CHARGE_MINOR


def packages(*, price_list: PriceList) -> list[Quote]:
    """Packages on sale; one priced above a single Stripe charge is never offered."""
    return [
        package_quote(package=p)
        for p in sorted(price_list.packages.all(), key=lambda p: p.credits)
        if p.active and package_chargeable(p)
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

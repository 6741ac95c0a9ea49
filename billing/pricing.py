"""Prices of credits. Pure reads; money is integer minor units plus a currency.

The pricing rule (docs/product.md, "Add credits")
-------------------------------------------------
*Typed quantities.* M credits typed cost M times one unit price: the lowest unit price among
the volume tiers M reaches (the list price below the first tier). All units take that price,
so the total drops where a tier starts: 999 at $10.00 = $9,990, 1,000 at $9.75 = $9,750. A tier
dearer than one below it would charge more per credit for buying more, so it never applies.

*The price of N credits is the cheapest way to buy at least N in one purchase*: N typed, a
larger typed quantity (1,000 for 999), or an active package of at least N credits, among
those Stripe can charge at once. On a tie the way with more credits wins, then the typed one
(exactly what was asked). What the admin is shown for N is that way, with the reason when it
is not N typed ("1,000 credits cost less than 999"), and a purchase is made for exactly the
quantity and total shown.

*A package also sets a rate.* Every typed quantity larger than a package costs at most that
package's price per credit, rounded down to a whole minor unit. So buying more never raises
the rate: without it, 9,357 typed ($9.25 each) would cost more per credit than the demo's
9,356-credit package ($84,204, $9.00 each). A package priced below one minor unit per credit
is not offered (its rate would make every larger quantity free).

What follows, and tests/billing/test_pricing.py checks for every N from 1 to 100,000:

- the total never falls as N grows: every way to get at least N + 1 also gets at least N;
- the rate per credit (total / N) never rises with N, packages included: a smaller need
  that gets a package pays its rate at best, and every larger typed quantity pays at most
  that rate (the unlock above);
- no larger typed quantity and no package costs less than what is offered for N.

*The ceiling.* One purchase is one Stripe charge, at most 99,999,999 in the currency's
smallest unit. The largest N that can be bought is the largest quantity of any way that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

from .currencies import format_money
from .models import CreditPackage, PriceList

__all__ = [
    "QUANTITY_CEILING",
    "STRIPE_MAX_CHARGE_MINOR",
    "Price",
    "PriceBook",
    "Quote",
    "format_money",
    "limit_message",
    "max_quantity",
    "package_chargeable",
    "packages",
    "price",
    "price_list_for",
    "suggestion",
]

# Stripe's amounts have at most eight digits in the currency's smallest unit, in every
# currency: $999,999.99, ¥99,999,999, 99,999.999 BHD. Every purchasable quantity is derived
# from it, so nothing is sent that Stripe cannot charge.
STRIPE_MAX_CHARGE_MINOR = 99_999_999
# Credits are counted in 32-bit columns (purchases, lots, holdings): even a free price list
# cannot make one purchase bigger than this.
QUANTITY_CEILING = 2**31 - 1


@dataclass(frozen=True)
class Quote:
    """One way to buy: a typed quantity at its tier, or a package."""

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
class Price:
    """The price of `asked` credits: `offer`, the cheapest way to get at least that many."""

    asked: int
    offer: Quote
    # `asked` typed at its tier, None when Stripe cannot charge that at once.
    exact: Quote | None
    # For a package: its credits typed, None when Stripe cannot charge that at once.
    typed_same: Quote | None = None

    @property
    def total_minor(self) -> int:
        return self.offer.total_minor

    @property
    def is_exact(self) -> bool:
        """The cheapest way is the quantity asked for, typed."""
        return self.offer.package is None and self.offer.quantity == self.asked

    @property
    def less_than_exact_minor(self) -> int:
        """How much less the offer costs than `asked` typed (0 when it is that)."""
        if self.exact is None or self.is_exact:
            return 0
        return self.exact.total_minor - self.offer.total_minor

    @property
    def extra_credits(self) -> int:
        return self.offer.quantity - self.asked

    @property
    def saving_minor(self) -> int:
        """What a package saves against its own credits typed (0 for a typed quantity, which
        is already priced as typed). Never measured against the rate of `asked`."""
        if self.offer.package is None or self.typed_same is None:
            return 0
        return self.typed_same.total_minor - self.offer.total_minor


@dataclass(frozen=True)
class PriceBook:
    """A price list reduced to what pricing needs, read once: `price()` over 100,000
    quantities asks the database nothing."""

    currency: str
    list_price_minor: int
    # (first quantity, unit price) of each stretch of typed quantities, in order, each
    # cheaper than the one before.
    bands: tuple[tuple[int, int], ...]
    # Active packages Stripe can charge, by credits.
    packages: tuple[CreditPackage, ...]

    @classmethod
    def build(
        cls,
        *,
        currency: str,
        list_price_minor: int,
        tiers: list[tuple[int, int]],
        packages: list[CreditPackage] | tuple[()] = (),
    ) -> PriceBook:
        starts = {1: list_price_minor}  # a tier at 1 replaces the list price
        for minimum, unit in sorted(tiers):
            starts[minimum] = unit
        on_sale = sorted(
            (p for p in packages if p.active and package_chargeable(p)), key=lambda p: p.credits
        )
        # A package also unlocks its rate, rounded down to a whole minor unit, for every
        # larger typed quantity: otherwise 9,357 typed ($9.25 each) would cost more per
        # credit than the 9,356 package ($9.00 each).
        unlocks = [(p.credits + 1, p.price_minor // p.credits) for p in on_sale]
        bands: list[tuple[int, int]] = []
        # Sorted by start, then unit: of several candidates at one start the cheapest comes
        # first, and only a candidate cheaper than everything before it starts a stretch.
        for start, unit in sorted([*starts.items(), *unlocks]):
            if not bands or unit < bands[-1][1]:
                bands.append((start, unit))
        return cls(
            currency=currency,
            list_price_minor=list_price_minor,
            bands=tuple(bands),
            packages=tuple(on_sale),
        )

    @classmethod
    def of(cls, price_list: PriceList) -> PriceBook:
        return cls.build(
            currency=price_list.currency,
            list_price_minor=price_list.list_price_minor,
            tiers=[(t.min_quantity, t.unit_price_minor) for t in price_list.tiers.all()],
            packages=list(price_list.packages.all()),
        )

    def unit_price(self, quantity: int) -> int:
        unit = self.bands[0][1]
        for start, price in self.bands:
            if start > quantity:
                break
            unit = price
        return unit

    @cached_property
    def typed_limit(self) -> int:
        """The largest typed quantity whose total fits in one Stripe charge (0 if none does).
        Totals drop where a tier starts, so every stretch is checked, not only the last."""
        best = 0
        for i, (start, unit) in enumerate(self.bands):
            end = self.bands[i + 1][0] - 1 if i + 1 < len(self.bands) else QUANTITY_CEILING
            top = min(end, STRIPE_MAX_CHARGE_MINOR // unit) if unit else end
            if top >= start:
                best = max(best, top)
        return min(best, QUANTITY_CEILING)

    @cached_property
    def max_quantity(self) -> int:
        """The largest quantity one purchase can hold: typed, or the biggest package."""
        biggest = self.packages[-1].credits if self.packages else 0
        return max(self.typed_limit, biggest)

    def typed(self, quantity: int) -> Quote | None:
        """`quantity` typed at its tier, or None if one Stripe charge cannot hold it."""
        if not 1 <= quantity <= QUANTITY_CEILING:
            return None
        total = quantity * self.unit_price(quantity)
        if total > STRIPE_MAX_CHARGE_MINOR:
            return None
        return Quote(
            quantity=quantity,
            total_minor=total,
            list_total_minor=quantity * self.list_price_minor,
            currency=self.currency,
        )

    def package_offer(self, package: CreditPackage) -> Quote:
        return Quote(
            quantity=package.credits,
            total_minor=package.price_minor,
            list_total_minor=package.credits * self.list_price_minor,
            currency=self.currency,
            package=package,
        )

    def price(self, quantity: int) -> Price:
        """The cheapest way to buy at least `quantity` (see the module's docstring); a
        ValueError with the message to show when there is none."""
        limit = self.max_quantity
        if quantity < 1:
            raise ValueError(f"Choose between 1 and {limit:,} credits.")
        if quantity > limit:
            raise ValueError(limit_message(currency=self.currency, limit=limit))
        exact = self.typed(quantity)
        # (total, credits, package) of every way; within a stretch the unit price is the
        # same, so a larger typed quantity can only cost less where a later stretch starts.
        ways = [(exact.total_minor, quantity, None)] if exact else []
        for start, unit in self.bands:
            if start > quantity and start * unit <= STRIPE_MAX_CHARGE_MINOR:
                ways.append((start * unit, start, None))
        ways += [(p.price_minor, p.credits, p) for p in self.packages if p.credits >= quantity]
        if not ways:  # between a dearer stretch's last chargeable quantity and the limit
            raise ValueError(limit_message(currency=self.currency, limit=limit))
        # The lowest total; on a tie more credits, then typed (what was asked) first.
        _, credits, package = min(ways, key=lambda w: (w[0], -w[1], w[2] is not None))
        if package is not None:
            offer = self.package_offer(package)
            typed_same = self.typed(credits)
        else:
            offer = exact if credits == quantity else self.typed(credits)
            typed_same = None
        return Price(asked=quantity, offer=offer, exact=exact, typed_same=typed_same)


def price_list_for(currency: str) -> PriceList | None:
    return PriceList.objects.filter(currency=currency).prefetch_related("tiers", "packages").first()


def max_quantity(*, price_list: PriceList) -> int:
    """The largest quantity one purchase can hold (0 if Stripe cannot charge even one)."""
    return PriceBook.of(price_list).max_quantity


def limit_message(
    *, price_list: PriceList | None = None, currency: str = "", limit: int | None = None
) -> str:
    """Why a quantity cannot be bought in one go, and what to do instead."""
    if price_list is not None:
        currency = price_list.currency
        if limit is None:
            limit = max_quantity(price_list=price_list)
    most = format_money(STRIPE_MAX_CHARGE_MINOR, currency)
    if not limit:
        return (
            f"Stripe cannot charge these credits online (at most {most} per payment). "
            "Please contact sales."
        )
    return (
        f"One purchase can hold at most {limit:,} credits: Stripe charges at most {most} per "
        "payment. Split a bigger order into several purchases, or contact sales."
    )


def price(*, price_list: PriceList, quantity: int) -> Price:
    """The price of `quantity` credits: the cheapest way to get at least that many."""
    return PriceBook.of(price_list).price(quantity)


def suggestion(*, price_list: PriceList, need: int) -> Price:
    """ "We calculate the best rate" for a shortfall of `need` credits: its price, the
    cheapest way to get at least `need`, with the reason and the true saving."""
    return price(price_list=price_list, quantity=need)


def package_chargeable(package: CreditPackage) -> bool:
    """Offered at all: one Stripe charge holds it, and it costs at least one minor unit per
    credit (the rate it unlocks is a whole minor unit)."""
    return package.credits <= package.price_minor <= STRIPE_MAX_CHARGE_MINOR


def packages(*, price_list: PriceList) -> list[Quote]:
    """Packages on sale; one priced above a single Stripe charge is never offered."""
    book = PriceBook.of(price_list)
    return [book.package_offer(p) for p in book.packages]

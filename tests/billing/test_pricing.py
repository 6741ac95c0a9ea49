"""The pricing rule of billing/pricing.py, as a finance team checks it: every quantity from 1
to 100,000, with the demo price list and with random ones."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import demo, pricing
from billing.currencies import format_money, minor_unit_exponent
from billing.models import CreditPackage
from billing.templatetags.billing import percent

db = pytest.mark.django_db
EVERY = 100_000  # every quantity from 1 to this is checked


@pytest.fixture
def price_list(prices):
    return pricing.price_list_for("USD")


def demo_packages() -> list[CreditPackage]:
    """The demo's packages as billing/demo.py prices them, without a database."""
    return [
        CreditPackage(
            pk=i + 1,
            credits=credits,
            price_minor=round(credits * demo.LIST_PRICE_MINOR * (100 - off) / 100),
            active=True,
        )
        for i, (credits, off) in enumerate(demo.PACKAGES)
    ]


def book(*, list_price=demo.LIST_PRICE_MINOR, tiers=demo.TIERS, packages=None):
    return pricing.PriceBook.build(
        currency="USD",
        list_price_minor=list_price,
        tiers=list(tiers),
        packages=demo_packages() if packages is None else packages,
    )


def on_sale(packages, ceiling=pricing.STRIPE_MAX_CHARGE_MINOR):
    return [p for p in packages if p.active and p.credits <= p.price_minor <= ceiling]


def typed_total(list_price: int, tiers, quantity: int, packages=()) -> int:
    """A typed quantity's total as the rule states it, written independently of PriceBook:
    the lowest unit price among the tiers it reaches (the list price unless a tier starts
    at 1) and the rates, rounded down, of the packages smaller than it."""
    units = [unit for minimum, unit in tiers if minimum <= quantity]
    if not any(minimum == 1 for minimum, _ in tiers):
        units.append(list_price)
    units += [p.price_minor // p.credits for p in on_sale(packages) if p.credits < quantity]
    return quantity * min(units)


def cheapest_at_least(list_price: int, tiers, packages, top: int) -> list[int | None]:
    """For every N up to `top`: the lowest total of anything that buys at least N credits,
    by brute force over every typed quantity up to Stripe's limit and every package."""
    ceiling = pricing.STRIPE_MAX_CHARGE_MINOR
    chargeable = on_sale(packages, ceiling)
    highest = max([top, *(p.credits + 1 for p in chargeable)])
    # Beyond every tier start and every package's unlock, a larger typed quantity only
    # costs more.
    last = max([highest, *(minimum for minimum, _ in tiers)])
    best: list[int | None] = [None] * (last + 2)
    by_credits: dict[int, int] = {}
    for p in chargeable:
        by_credits[p.credits] = p.price_minor
    running = None
    for m in range(last, 0, -1):
        total = typed_total(list_price, tiers, m, chargeable)
        if total <= ceiling and (running is None or total < running):
            running = total
        package = by_credits.get(m)
        if package is not None and (running is None or package < running):
            running = package
        best[m] = running
    return best[: top + 1]


def check_every_quantity(list_price: int, tiers, packages) -> int:
    """The rule's promises for every N from 1 to EVERY (or the largest purchasable N)."""
    full = book(list_price=list_price, tiers=tiers, packages=packages)
    top = min(EVERY, full.max_quantity)
    reference = cheapest_at_least(list_price, tiers, packages, top)
    previous = (0, 0)  # (total, N) of the N before
    for n in range(1, top + 1):
        price = full.price(n)
        offer = price.offer
        # At least N credits, within one Stripe charge, and never beaten by anything that
        # buys at least N: a larger typed quantity or a package.
        assert offer.quantity >= n
        assert offer.total_minor <= pricing.STRIPE_MAX_CHARGE_MINOR
        assert offer.total_minor == reference[n], n
        if offer.package is None:
            assert offer.total_minor == typed_total(list_price, tiers, offer.quantity, packages)
        # The total never falls as N grows ...
        assert price.total_minor >= previous[0], n
        # ... and the rate per credit never rises: total(N) / N <= total(N-1) / (N-1).
        assert n == 1 or price.total_minor * previous[1] <= previous[0] * n, n
        previous = (price.total_minor, n)
    return top


def test_every_quantity_up_to_100000_with_the_demo_prices():
    assert check_every_quantity(demo.LIST_PRICE_MINOR, demo.TIERS, demo_packages()) == EVERY


tier_tables = st.lists(
    st.tuples(st.integers(1, EVERY), st.integers(1, 1_500)),
    max_size=6,
    unique_by=lambda tier: tier[0],
)
package_lists = st.lists(
    st.tuples(st.integers(1, EVERY + 20_000), st.integers(1, 120_000_000), st.booleans()),
    max_size=5,
    unique_by=lambda package: package[0],
).map(
    lambda rows: [
        CreditPackage(pk=i + 1, credits=c, price_minor=p, active=a)
        for i, (c, p, a) in enumerate(rows)
    ]
)


# Each example checks 100,000 quantities (about a second): a few random lists, every time.
@settings(max_examples=8, deadline=None)
@given(list_price=st.integers(1, 1_500), tiers=tier_tables, packages=package_lists)
def test_every_quantity_up_to_100000_with_random_price_lists(list_price, tiers, packages):
    check_every_quantity(list_price, tiers, packages)


@given(list_price=st.integers(1, 1_500), tiers=tier_tables, packages=package_lists)
def test_the_largest_purchasable_quantity_is_exactly_where_stripe_stops(
    list_price, tiers, packages
):
    prices = book(list_price=list_price, tiers=tiers, packages=packages)
    top = prices.max_quantity
    if top:
        assert prices.price(top).total_minor <= pricing.STRIPE_MAX_CHARGE_MINOR
    if top < pricing.QUANTITY_CEILING:
        with pytest.raises(ValueError, match=r"at most|cannot charge"):
            prices.price(top + 1)


# --- The figures of issue 15, with the demo prices ----------------------------------------


@db
@pytest.mark.parametrize(
    ("need", "credits", "total", "typed_total"),
    [
        (1, 1, 1_000, 1_000),  # never the $11,407.50 package
        (999, 1_000, 975_000, 999_000),
        (9_000, 9_000, 8_325_000, 8_325_000),  # 9,000 typed is already the cheapest
        # Not the 18,712 package ($159,052): above the 9,356 package, its $9.00 rate.
        (9_730, 9_730, 8_757_000, 8_757_000),
        (9_999, 9_999, 8_999_100, 8_999_100),
        (19_999, 19_999, 16_999_150, 16_999_150),  # above the 18,712 package: $8.50
    ],
)
def test_the_price_of_n_is_the_cheapest_way_to_get_at_least_n(
    price_list, need, credits, total, typed_total
):
    price = pricing.suggestion(price_list=price_list, need=need)
    assert (price.offer.quantity, price.offer.total_minor) == (credits, total)
    assert price.offer.package is None
    assert price.exact.total_minor == typed_total
    assert price.less_than_exact_minor == typed_total - total
    assert price.is_exact == (credits == need)


@db
def test_a_package_wins_where_it_is_cheapest_and_its_saving_is_against_its_credits_typed(
    price_list,
):
    # 9,200 typed at $9.25 is $85,100; the 9,356 package is $84,204.
    price = pricing.suggestion(price_list=price_list, need=9_200)
    assert price.offer.package.credits == 9_356
    assert price.less_than_exact_minor == 8_510_000 - 8_420_400
    # Its 9,356 credits typed would be $86,543: that is the saving, not a figure at the
    # rate of 9,200.
    assert price.saving_minor == 8_654_300 - 8_420_400


@db
def test_the_18712_package_saves_9356_dollars_against_its_credits_typed(price_list):
    # The figure: against a $9.25 rate the package "saved" $14,034. Its 18,712
    # credits typed cost $168,408 (at $9.00): the saving is $9,356, whatever the need.
    for need in (17_673, 18_000, 18_712):
        price = pricing.suggestion(price_list=price_list, need=need)
        assert price.offer.package.credits == 18_712
        assert price.saving_minor == 935_600
    assert pricing.suggestion(price_list=price_list, need=17_672).is_exact


@db
def test_a_typed_quantity_is_priced_at_its_tier(price_list):
    prices = pricing.PriceBook.of(price_list)
    assert prices.typed(10).total_minor == 10_000
    big = pricing.price(price_list=price_list, quantity=2_600).offer
    assert (big.unit_price_minor, big.total_minor, big.discount_percent) == (950, 2_470_000, 5)


@db
@pytest.mark.parametrize("quantity", [0, -5])
def test_quantities_below_one_are_refused(price_list, quantity):
    with pytest.raises(ValueError, match="Choose between 1 and 117,647"):
        pricing.price(price_list=price_list, quantity=quantity)


@db
def test_the_limit_is_the_largest_quantity_stripe_can_charge_at_once(price_list):
    # 20,000+ credits cost $8.50: 117,647 of them are $999,999.50, one more is over $999,999.99.
    assert pricing.max_quantity(price_list=price_list) == 117_647
    top = pricing.price(price_list=price_list, quantity=117_647).offer
    assert top.total_minor == 99_999_950 <= pricing.STRIPE_MAX_CHARGE_MINOR


@db
@pytest.mark.parametrize("quantity", [117_648, 1_000_000, 2**31])
def test_quantities_above_the_limit_are_refused_with_what_to_do(price_list, quantity):
    with pytest.raises(ValueError, match=r"at most 117,647 credits.*\$999,999\.99.*contact sales"):
        pricing.price(price_list=price_list, quantity=quantity)


@db
def test_quantities_a_dearer_tier_cannot_charge_are_sold_as_the_cheaper_larger_quantity(
    price_list,
):
    # $10.00 up to 119,999 and $8.00 from 120,000: 100,000 to 119,999 typed are over
    # $999,999.99, but 120,000 credits ($960,000) are not, and cost less than 99,999 typed.
    price_list.tiers.all().delete()
    price_list.packages.all().delete()
    price_list.tiers.create(min_quantity=120_000, unit_price_minor=800)
    price_list = pricing.price_list_for("USD")
    assert pricing.max_quantity(price_list=price_list) == 124_999
    for quantity in (99_999, 100_000, 119_999):
        offer = pricing.price(price_list=price_list, quantity=quantity).offer
        assert (offer.quantity, offer.total_minor) == (120_000, 96_000_000)
    # 96,000 typed cost the same $960,000: the way with more credits wins the tie.
    assert pricing.price(price_list=price_list, quantity=96_000).offer.quantity == 120_000
    assert pricing.price(price_list=price_list, quantity=95_999).offer.quantity == 95_999
    assert pricing.price(price_list=price_list, quantity=124_999).total_minor == 99_999_200
    with pytest.raises(ValueError, match="at most 124,999 credits"):
        pricing.price(price_list=price_list, quantity=125_000)


@db
def test_a_big_package_raises_the_limit(price_list):
    price_list.packages.create(name="Big", credits=150_000, price_minor=99_000_000)
    price_list = pricing.price_list_for("USD")
    # The package itself, and above it typed quantities at its $6.60 as far as one charge
    # goes: 151,515 x $6.60 = $999,999.00.
    assert pricing.max_quantity(price_list=price_list) == 151_515
    assert pricing.price(price_list=price_list, quantity=130_000).offer.package.credits == 150_000


@db
def test_a_package_stripe_cannot_charge_is_not_offered(price_list):
    price_list.packages.filter(credits=18_712).update(price_minor=100_000_000)
    price_list = pricing.price_list_for("USD")
    assert 18_712 not in [offer.quantity for offer in pricing.packages(price_list=price_list)]


def test_a_tier_dearer_than_one_below_it_never_applies():
    prices = book(tiers=[(1_000, 900), (2_000, 950)], packages=[])
    assert prices.typed(2_500).total_minor == 2_500 * 900


# --- Money in each currency's minor unit ----------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1000, "JPY", "1,000 JPY"),  # not "10.00 JPY"
        (99_999_999, "JPY", "99,999,999 JPY"),
        (5, "KRW", "5 KRW"),
        (123_456, "USD", "$1,234.56"),
        (5, "USD", "$0.05"),
        (-250, "EUR", "-€2.50"),
        (1_234, "BHD", "1.234 BHD"),
        (99_999_999, "KWD", "99,999.999 KWD"),
        (100, "ISK", "1.00 ISK"),  # Stripe takes ISK with two decimals
        (1_234, "CHF", "12.34 CHF"),
    ],
)
def test_money_respects_each_currencys_minor_unit(amount, currency, shown):
    assert format_money(amount, currency) == shown


def test_minor_unit_exponents():
    assert [minor_unit_exponent(c) for c in ("JPY", "jpy", "USD", "BHD", "TND")] == [0, 0, 2, 3, 3]


def test_the_limit_message_is_in_the_currencys_own_unit():
    assert "¥" not in pricing.limit_message(currency="JPY", limit=10)
    assert "at most 99,999,999 JPY per payment" in pricing.limit_message(currency="JPY", limit=10)
    assert "at most 99,999.999 BHD per payment" in pricing.limit_message(currency="BHD", limit=1)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(Decimal("10.0"), "10%"), (Decimal("7.5"), "7.5%"), (0, "0%"), (2.5, "2.5%")],
)
def test_percentages_have_no_trailing_zero(value, shown):
    assert percent(value) == shown

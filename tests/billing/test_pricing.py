from decimal import Decimal

import pytest

from billing import pricing
from billing.templatetags.billing import percent

pytestmark = pytest.mark.django_db


@pytest.fixture
def price_list(prices):
    return pricing.price_list_for("USD")


def test_a_typed_quantity_is_priced_at_its_tier(price_list):
    assert pricing.quote(price_list=price_list, quantity=10).total_minor == 10_000
    big = pricing.quote(price_list=price_list, quantity=2_600)
    assert (big.unit_price_minor, big.total_minor, big.discount_percent) == (950, 2_470_000, 5)


def test_need_9000_suggests_the_9356_package_for_10_percent_off(price_list):
    offer = pricing.suggestion(price_list=price_list, need=9_000)
    assert offer.exact.quantity == 9_000
    assert offer.exact.discount_percent == pytest.approx(7.5)
    assert offer.better.quantity == 9_356
    assert offer.better.discount_percent == 10
    # 9,356 credits at the 9,000 rate ($9.25) would cost $86,543.00; the package $84,204.00.
    assert offer.saving_minor == 233_900


def test_no_suggestion_when_no_package_beats_the_rate(price_list):
    assert pricing.suggestion(price_list=price_list, need=30_000).better is None


def test_the_best_rate_offers_a_cheaper_bigger_package(price_list):
    # 4,600 typed at the 2,500+ tier costs $43,700; the 4,678 package costs $43,271.50.
    best = pricing.best_offer(price_list=price_list, quantity=4_600)
    assert best.package is not None and best.quantity == 4_678


@pytest.mark.parametrize("quantity", [0, -5])
def test_quantities_below_one_are_refused(price_list, quantity):
    with pytest.raises(ValueError, match="Choose between 1 and 117,647"):
        pricing.quote(price_list=price_list, quantity=quantity)


def test_the_limit_is_the_largest_quantity_stripe_can_charge_at_once(price_list):
    # 20,000+ credits cost $8.50: 117,647 of them are $999,999.50, one more is over $999,999.99.
    assert pricing.max_quantity(price_list=price_list) == 117_647
    top = pricing.quote(price_list=price_list, quantity=117_647)
    assert top.total_minor == 99_999_950 <= pricing.STRIPE_MAX_CHARGE_MINOR


@pytest.mark.parametrize("quantity", [117_648, 1_000_001, 2**31])
def test_quantities_above_the_limit_are_refused_with_what_to_do(price_list, quantity):
    with pytest.raises(ValueError, match=r"at most 117,647 credits.*\$999,999\.99.*contact sales"):
        pricing.quote(price_list=price_list, quantity=quantity)


def test_the_limit_follows_the_price_list(price_list):
    # Where a cheaper tier starts past the point the dearer price already exceeds the
    # maximum, the quantities between are refused but the limit lies beyond them.
    price_list.tiers.all().delete()
    price_list.tiers.create(min_quantity=120_000, unit_price_minor=800)
    price_list = pricing.price_list_for("USD")
    assert pricing.max_quantity(price_list=price_list) == 124_999
    assert pricing.quote(price_list=price_list, quantity=99_999).total_minor == 99_999_000
    with pytest.raises(ValueError, match="at most 124,999 credits"):
        pricing.quote(price_list=price_list, quantity=100_000)
    assert pricing.quote(price_list=price_list, quantity=124_999).total_minor == 99_999_200


def test_a_package_stripe_cannot_charge_is_not_offered(price_list):
    price_list.packages.filter(credits=18_712).update(price_minor=100_000_000)
    price_list = pricing.price_list_for("USD")
    assert 18_712 not in [offer.quantity for offer in pricing.packages(price_list=price_list)]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(Decimal("10.0"), "10%"), (Decimal("7.5"), "7.5%"), (0, "0%"), (2.5, "2.5%")],
)
def test_percentages_have_no_trailing_zero(value, shown):
    assert percent(value) == shown

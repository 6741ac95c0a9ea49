import pytest

from billing import pricing

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


@pytest.mark.parametrize("quantity", [0, -5, 1_000_001])
def test_quantities_out_of_range_are_refused(price_list, quantity):
    with pytest.raises(ValueError, match="Choose between 1 and 1,000,000"):
        pricing.quote(price_list=price_list, quantity=quantity)

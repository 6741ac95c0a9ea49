"""Demo prices: $10.00 list price, volume tiers and packages.

They reproduce seed 000's example: a need of 9,000 credits is priced at the 5,000+ tier
(7.5% off), and the next package, 9,356 credits, unlocks 10% off.
"""

from django.db import transaction

from .models import CreditPackage, PriceList, SubscriptionPlan, VolumeTier

LIST_PRICE_MINOR = 1000
# minimum quantity -> unit price in cents
TIERS = [(1, 1000), (1_000, 975), (2_500, 950), (5_000, 925), (10_000, 900), (20_000, 850)]
# credits -> discount in percent off the list price
# name, interval, credits per period, price in cents, rank
PLANS = [
    ("Starter", "month", 50, 45_000, 1),
    ("Team", "month", 200, 170_000, 2),
    ("Business", "month", 500, 400_000, 3),
    ("Team", "year", 2_400, 1_800_000, 2),
]
PACKAGES = [(100, 0), (1_170, 2.5), (2_339, 5), (4_678, 7.5), (9_356, 10), (18_712, 15)]


@transaction.atomic
def seed() -> int:
    """Create or update the demo prices: four statements, whatever is there already (the
    test suite seeds them for every billing test, so a row-by-row upsert added up)."""
    price_list, _ = PriceList.objects.update_or_create(
        currency="USD", defaults={"list_price_minor": LIST_PRICE_MINOR}
    )
    VolumeTier.objects.bulk_create(
        [
            VolumeTier(price_list=price_list, min_quantity=minimum, unit_price_minor=unit)
            for minimum, unit in TIERS
        ],
        update_conflicts=True,
        unique_fields=["price_list", "min_quantity"],
        update_fields=["unit_price_minor"],
    )
    CreditPackage.objects.bulk_create(
        [
            CreditPackage(
                price_list=price_list,
                credits=credits,
                name=f"{credits:,} credits",
                price_minor=round(credits * LIST_PRICE_MINOR * (100 - discount) / 100),
                active=True,
            )
            for credits, discount in PACKAGES
        ],
        update_conflicts=True,
        unique_fields=["price_list", "credits"],
        update_fields=["name", "price_minor", "active"],
    )
    SubscriptionPlan.objects.bulk_create(
        [
            SubscriptionPlan(
                interval=interval,
                rank=rank,
                currency="USD",
                name=name,
                credits_per_period=credits,
                price_minor=price,
            )
            for name, interval, credits, price, rank in PLANS
        ],
        update_conflicts=True,
        unique_fields=["interval", "rank", "currency"],
        update_fields=["name", "credits_per_period", "price_minor"],
    )
    return len(PACKAGES)

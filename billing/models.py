from django.db import models


class PriceList(models.Model):
    """What a credit costs in one currency: the list (retail) price and its volume tiers."""

    currency = models.CharField(max_length=3, unique=True)
    list_price_minor = models.PositiveIntegerField(
        help_text="Retail price of one credit, in minor units (cents)."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="pricelist_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.currency} price list"


class VolumeTier(models.Model):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="tiers")
    min_quantity = models.PositiveIntegerField()
    unit_price_minor = models.PositiveIntegerField()

    class Meta:
        ordering = ["price_list", "min_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["price_list", "min_quantity"], name="tier_unique"),
            models.CheckConstraint(condition=models.Q(min_quantity__gte=1), name="tier_min_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.min_quantity}+ at {self.unit_price_minor} {self.price_list.currency}"


class CreditPackage(models.Model):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="packages")
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    price_minor = models.PositiveIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["price_list", "credits"]
        constraints = [
            models.UniqueConstraint(fields=["price_list", "credits"], name="package_unique"),
            models.CheckConstraint(condition=models.Q(credits__gte=1), name="package_credits_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"

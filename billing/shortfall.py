"""What a page says when a cost is more than the available credits. One definition for the
cart, the plan and Confirm users: `available` is the general pool's (credits.selectors), and
the organization's policy decides whether the rest is bought first or billed as overage."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Organization
from credits.selectors import Balance

from . import pricing


@dataclass(frozen=True)
class Shortfall:
    credits: int  # how many more than are available (0: enough)
    billed_as_overage: bool  # policy `bill_overage`: the admin may go on
    overage_price: str = ""  # the list price of one credit, formatted ("" if none)

    @property
    def blocks(self) -> bool:
        """Under policy `buy`, a shortfall must be bought before going on."""
        return bool(self.credits) and not self.billed_as_overage


def shortfall_for(*, organization: Organization, need: int, balance: Balance) -> Shortfall:
    short = max(need - balance.spendable, 0)
    if not short or organization.when_short != Organization.WhenShort.BILL_OVERAGE:
        return Shortfall(credits=short, billed_as_overage=False)
    price_list = pricing.price_list_for(organization.currency)
    price = (
        pricing.format_money(price_list.list_price_minor, price_list.currency) if price_list else ""
    )
    return Shortfall(credits=short, billed_as_overage=True, overage_price=price)

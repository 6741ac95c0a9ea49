from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import Organization, User
from config.errors import Refusal

from .models import CartLine, Level

MAX_SEATS = 100_000


class CartRefused(Refusal):
    """A cart change refused; the message says why."""


def _check_seats(seats: int) -> None:
    if not 1 <= seats <= MAX_SEATS:
        raise CartRefused(f"Choose between 1 and {MAX_SEATS:,} seats.")


def cart_add(*, organization: Organization, user: User, level: Level, seats: int) -> CartLine:
    """Add seats of a level (to the line already there, if any)."""
    _check_seats(seats)
    if not level.course.published:
        raise CartRefused("That course is not in the catalog any more.")
    lines = CartLine.objects.filter(organization=organization, user=user, level=level)
    if lines.update(seats=F("seats") + seats):
        return lines.get()
    try:
        with transaction.atomic():
            return CartLine.objects.create(
                organization=organization, user=user, level=level, seats=seats
            )
    except IntegrityError:  # a second tab added the same level at the same moment
        lines.update(seats=F("seats") + seats)
        return lines.get()


def cart_set_seats(*, line: CartLine, seats: int) -> CartLine:
    _check_seats(seats)
    line.seats = seats
    line.save(update_fields=["seats"])
    return line


def cart_remove(*, line: CartLine) -> None:
    line.delete()

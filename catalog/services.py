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
    if _add_to_line(lines, seats):
        return lines.get()
    try:
        with transaction.atomic():
            return CartLine.objects.create(
                organization=organization, user=user, level=level, seats=seats
            )
    except IntegrityError:  # a second tab added the same level at the same moment
        if not _add_to_line(lines, seats):
            raise _too_many(lines.get().seats) from None
        return lines.get()


def _add_to_line(lines, seats: int) -> bool:
    """Add to the existing line in one statement that keeps the total within the limit.
    False when there is no line yet; CartRefused when the total would pass the limit."""
    if lines.filter(seats__lte=MAX_SEATS - seats).update(seats=F("seats") + seats):
        return True
    line = lines.first()
    if line is None:
        return False
    raise _too_many(line.seats)


def _too_many(already: int) -> CartRefused:
    return CartRefused(
        f"Your cart already has {already:,} seats of this level: a line holds at most "
        f"{MAX_SEATS:,}."
    )


def cart_set_seats(*, line: CartLine, seats: int) -> CartLine:
    _check_seats(seats)
    line.seats = seats
    line.save(update_fields=["seats"])
    return line


def cart_remove(*, line: CartLine) -> None:
    line.delete()

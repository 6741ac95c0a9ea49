from django.db.models import Q, QuerySet, Sum

from accounts.models import Organization, User

from .models import CartLine, Course


def courses(*, search: str = "", category: str = "") -> QuerySet[Course]:
    found = Course.objects.filter(published=True).prefetch_related("levels")
    # "python  basics" means "python basics": runs of spaces, tabs or newlines count as one.
    search = " ".join(search.split())
    if search:
        found = found.filter(Q(title__icontains=search) | Q(summary__icontains=search))
    if category:
        found = found.filter(category=category)
    return found


def categories() -> list[str]:
    return list(
        Course.objects.filter(published=True)
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )


def cart_lines(*, organization: Organization, user: User) -> QuerySet[CartLine]:
    return CartLine.objects.filter(organization=organization, user=user).select_related(
        "level__course"
    )


def cart_seats(*, organization: Organization, user: User) -> int:
    total = CartLine.objects.filter(organization=organization, user=user).aggregate(
        seats=Sum("seats")
    )["seats"]
    return total or 0

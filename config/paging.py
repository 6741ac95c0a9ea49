"""Pages of a list that is never counted: for lists as long as an organization's history,
where Django's Paginator would read every row for its "of N" on every page."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet


@dataclass(frozen=True)
class UncountedPage:
    """The same names as a Paginator's page, where the templates need them, minus the total:
    whether there is a next page is known by reading one row more than the page."""

    object_list: list
    number: int
    size: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_other_pages(self) -> bool:
        return self.has_previous or self.has_next

    def previous_page_number(self) -> int:
        return self.number - 1

    def next_page_number(self) -> int:
        return self.number + 1

    def start_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.object_list else 0

    def end_index(self) -> int:
        return (self.number - 1) * self.size + len(self.object_list)


def uncounted_page(queryset: QuerySet, *, number: int, size: int) -> UncountedPage:
    """Page `number` (from 1) of `queryset`, which must be ordered. A number past the end (an
    old link, rows gone since) gives the first page. The offset still walks the pages before
    it: cheap for the first pages people look at, as long as a deep page is rare."""
    offset = (number - 1) * size
    rows = list(queryset[offset : offset + size + 1])
    if not rows and number > 1:
        return uncounted_page(queryset, number=1, size=size)
    return UncountedPage(rows[:size], number, size, has_next=len(rows) > size)

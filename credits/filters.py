import datetime as dt

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone

from . import validity
from .models import LedgerTransaction

# Days a person may ask about: wide enough for any real history, narrow enough that the day
# after the last one is still a date (9999-12-31 + 1 day would overflow).
FIRST_DAY = dt.date(2000, 1, 1)
LAST_DAY = dt.date(2999, 12, 31)
DAY_BOUNDS = [MinValueValidator(FIRST_DAY), MaxValueValidator(LAST_DAY)]


def local_midnight(day: dt.date) -> dt.datetime:
    """The instant a day begins in the viewer's time zone. A day is the half-open range
    [its midnight, the next day's midnight): the history's filters and the balance "at the
    end of" a day use the same instants, so an entry made exactly at midnight belongs to the
    day that midnight begins, on both."""
    return validity.day_start(day, timezone.get_current_timezone())


class BoundedDateFilter(django_filters.DateFilter):
    field_class = forms.DateField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validators", DAY_BOUNDS)
        super().__init__(*args, **kwargs)


class HistoryFilter(django_filters.FilterSet):
    """Ledger history filters. Dates are days in the viewer's time zone, turned into a range
    of instants [From's midnight, the midnight after To) so that the (organization,
    created_at) index serves them (no `__date`, which would read every row's local date)."""

    kind = django_filters.ChoiceFilter(choices=LedgerTransaction.Kind.choices, empty_label="All")
    start = BoundedDateFilter(method="filter_start", label="From")
    end = BoundedDateFilter(method="filter_end", label="To")

    class Meta:
        model = LedgerTransaction
        fields = ["kind", "start", "end"]

    def filter_start(self, queryset, name, value):
        return queryset.filter(created_at__gte=local_midnight(value))

    def filter_end(self, queryset, name, value):
        return queryset.filter(created_at__lt=local_midnight(value + dt.timedelta(days=1)))

import django_filters

from .models import LedgerTransaction


class HistoryFilter(django_filters.FilterSet):
    """Ledger history filters. Dates are days in the viewer's time zone."""

    kind = django_filters.ChoiceFilter(choices=LedgerTransaction.Kind.choices, empty_label="All")
    start = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="From"
    )
    end = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte", label="To")

    class Meta:
        model = LedgerTransaction
        fields = ["kind", "start", "end"]

import csv
import datetime as dt
import zoneinfo
from collections.abc import Iterator

from django import forms
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from accounts.decorators import admin_required
from config.csv_cells import neutralise_row
from config.db_router import replica_reads
from config.paging import uncounted_page

from . import selectors
from .filters import DAY_BOUNDS, HistoryFilter, local_midnight
from .finance import finance_months

HISTORY_PAGE_SIZE = 25
# Lots per page: an organization with years of purchases has tens of thousands.
LOTS_PAGE_SIZE = 50


class PagesForm(forms.Form):
    """The Credits page's pages: of the history (the rows older than `before`, or newer than
    `after`: transaction ids), and of the lots, current (default) or past."""

    before = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    after = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    lots = forms.ChoiceField(required=False, choices=[("", "Current"), ("past", "Past")])
    lots_page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


def _history(request: HttpRequest) -> HistoryFilter:
    return HistoryFilter(
        request.GET, queryset=selectors.ledger_history(organization=request.organization)
    )


class AsOfForm(forms.Form):
    as_of = forms.DateField(required=False, validators=DAY_BOUNDS)


def _as_of(request: HttpRequest) -> tuple[dt.date | None, int | None]:
    """The credits usable at the end of the chosen day in the viewer's time zone: at the
    midnight that ends it, where the history's day ends too (entries at that instant belong
    to the next day, and a lot expiring then no longer counts)."""
    form = AsOfForm(request.GET)
    day = form.cleaned_data["as_of"] if form.is_valid() else None
    if day is None:
        return None, None
    end_of_day = local_midnight(day + dt.timedelta(days=1))
    return day, selectors.balance_as_of(organization=request.organization, at=end_of_day)


@require_GET
@admin_required
# The history's htmx answer (a fragment) and the page share one pushed address: a browser
# must not serve one from its cache for the other (Back after leaving the page).
@vary_on_headers("HX-Request")
def overview(request: HttpRequest) -> HttpResponse:
    history = _history(request)
    pages = PagesForm(request.GET)
    pages.is_valid()  # a field in error is left out of cleaned_data: that page is the first
    chosen = pages.cleaned_data
    page = selectors.history_page(
        history=history.qs,
        size=HISTORY_PAGE_SIZE,
        before=chosen.get("before"),
        after=chosen.get("after"),
    )
    as_of_date, as_of_balance = _as_of(request)
    past = chosen.get("lots") == "past"
    # Not counted: a big organization's current lots alone are tens of thousands.
    lots = uncounted_page(
        selectors.lots_with_remaining(organization=request.organization, past=past),
        number=chosen.get("lots_page") or 1,
        size=LOTS_PAGE_SIZE,
    )
    lots_query = request.GET.copy()
    lots_query.pop("lots_page", None)
    context = {
        "balance": selectors.organization_balance(organization=request.organization),
        "lots": lots,
        "past_lots": past,
        "current_lots_link": "?" + _with(lots_query.urlencode(), lots=""),
        "past_lots_link": "?" + _with(lots_query.urlencode(), lots="past"),
        "lots_query": lots_query.urlencode(),
        "history": history,
        "page": page,
        "as_of_date": as_of_date,
        "as_of_balance": as_of_balance,
        "query": _query_without_page(request),
    }
    template = "credits/overview.html"
    if request.htmx and request.htmx.target == "history":
        template += "#history"
    return render(request, template, context)


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("before", None)
    query.pop("after", None)
    return query.urlencode()


def _with(query: str, **values) -> str:
    """`query` (urlencoded) with `values` set: the lots' links keep the history's filters."""
    merged = QueryDict(query, mutable=True)
    for name, value in values.items():
        merged.pop(name, None)
        if value:
            merged[name] = value
    return merged.urlencode()


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@admin_required
@replica_reads()
def history_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered history as CSV, streamed row by row: any length, constant memory. From
    the read replica when there is one: an export may be a moment behind, and years of
    history are read without loading the primary."""
    rows = _history(request).qs.order_by("created_at", "id")
    zone = timezone.get_current_timezone()

    # The response iterates this after the view has returned: its reads need the replica too.
    @replica_reads()
    def lines() -> Iterator[str]:
        writer = csv.writer(_Echo())
        yield writer.writerow(
            ["date", "kind", "reference", "requested", "net change", "account", "by", "note"]
        )
        for txn in rows.iterator(chunk_size=2000):
            # References, memos and names are typed by people: none may run as a formula.
            yield writer.writerow(
                neutralise_row(
                    [
                        txn.created_at.astimezone(zone).isoformat(timespec="seconds"),
                        txn.get_kind_display(),
                        txn.reference,
                        txn.quantity,
                        txn.net,
                        str(txn.account) if txn.account_id else "",
                        txn.actor.email if txn.actor_id else "",
                        txn.memo,
                    ]
                )
            )

    stamp = timezone.localdate().isoformat()
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="credit-history-{stamp}.csv"'
    return response


# Months of the finance report shown on the page, newest first; the CSV has them all.
FINANCE_MONTHS_SHOWN = 24


@require_GET
@admin_required
@replica_reads()
def finance(request: HttpRequest) -> HttpResponse:
    """Monthly credits in, consumed, expired and revoked, and outstanding at month end, in
    credits and at each lot's cost basis (credits/finance.py)."""
    months = finance_months(organization=request.organization)
    shown = months[-FINANCE_MONTHS_SHOWN:]
    peak = max((m.closing.money for m in shown), default=0) or 1
    bars = []
    for i, m in enumerate(shown):
        height = round(float(max(m.closing.money, 0) / peak) * 100, 1)
        bars.append({"month": m, "x": i * 24, "y": round(105 - height, 1), "height": height})
    return render(
        request,
        "credits/finance.html",
        {
            "months": shown[::-1],
            "bars": bars,
            "chart_width": max(len(bars) * 24, 24),
            "more": len(months) > len(shown),
            "currency": request.organization.currency,
        },
    )


@require_GET
@admin_required
@replica_reads()
def finance_csv(request: HttpRequest) -> HttpResponse:
    months = finance_months(organization=request.organization)
    currency = request.organization.currency
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    zone = zoneinfo.ZoneInfo(request.organization.time_zone)
    stamp = timezone.localdate(timezone=zone).isoformat()
    response["Content-Disposition"] = f'attachment; filename="credit-finance-{stamp}.csv"'
    writer = csv.writer(response)
    header = ["month"]
    for part in ("opening", "added", "consumed", "expired", "revoked", "closing"):
        header += [f"{part} credits", f"{part} {currency}"]
    writer.writerow(header)
    for m in months:
        row = [m.month.strftime("%Y-%m")]
        for figure in (m.opening, m.added, m.consumed, m.expired, m.revoked, m.closing):
            row += [figure.credits, f"{figure.money_major}"]
        writer.writerow(row)
    return response

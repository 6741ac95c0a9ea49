from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts.decorators import admin_required
from billing.shortfall import shortfall_for
from credits import selectors as credit_selectors

from . import selectors, services
from .forms import CartLineForm, SearchForm, SeatsForm
from .models import CartLine, Course, Level


def _first_error(form) -> str:
    return next(iter(form.errors.values()))[0]


@require_GET
@admin_required
@vary_on_headers("HX-Request")  # its results fragment is pushed to the page's own address
def index(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    # A search too long or odd to run shows every course rather than an error page.
    filters = form.cleaned_data if form.is_valid() else {"q": "", "category": ""}
    search, category = filters["q"].strip(), filters["category"]
    context = {
        "courses": selectors.courses(search=search, category=category),
        "categories": selectors.categories(),
        "search": search,
        "category": category,
    }
    template = "catalog/index.html"
    if request.htmx and request.htmx.target == "results":
        template += "#results"
    return render(request, template, context)


@require_GET
@admin_required
def course(request: HttpRequest, slug: str) -> HttpResponse:
    item = get_object_or_404(Course.objects.prefetch_related("levels"), slug=slug, published=True)
    return render(request, "catalog/course.html", {"course": item})


@require_POST
@admin_required
def cart_add(request: HttpRequest, level_id: int) -> HttpResponse:
    level = get_object_or_404(Level.objects.select_related("course"), pk=level_id)
    form = SeatsForm(request.POST)
    try:
        if not form.is_valid():
            raise services.CartRefused(_first_error(form))
        line = services.cart_add(
            organization=request.organization,
            user=request.user,
            level=level,
            seats=form.cleaned_data["seats"],
        )
    except services.CartRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request,
            f"{line.level} is in your cart ({line.seats:,} seat{pluralize(line.seats)}).",
        )
    if request.htmx:
        # The message and the cart badge are swapped in place: no reload.
        return render(
            request,
            "catalog/course.html#added",
            {
                "cart_count": selectors.cart_seats(
                    organization=request.organization, user=request.user
                ),
                "oob": True,
            },
        )
    return redirect("catalog:course", level.course.slug)


def _cart_context(request: HttpRequest) -> dict:
    lines = list(selectors.cart_lines(organization=request.organization, user=request.user))
    balance = credit_selectors.organization_balance(organization=request.organization)
    # Every seat of every line: what the plan's seats will cost once people fill them.
    total = sum(line.cost for line in lines)
    return {
        "lines": lines,
        "total": total,
        "balance": balance,
        "shortfall": shortfall_for(organization=request.organization, need=total, balance=balance),
        "cart_count": sum(line.seats for line in lines),
    }


@never_cache
@require_GET
@admin_required
def cart(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/cart.html", _cart_context(request))


@require_POST
@admin_required
def cart_line(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a line's seats, or remove it."""
    line = get_object_or_404(CartLine, pk=pk, organization=request.organization, user=request.user)
    form = CartLineForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_error(form))
    elif form.cleaned_data["action"] == "remove":
        services.cart_remove(line=line)
    else:
        try:
            services.cart_set_seats(line=line, seats=form.cleaned_data["seats"])
        except services.CartRefused as refusal:
            messages.error(request, str(refusal))
    if request.htmx:
        return render(request, "catalog/cart.html#cart", {**_cart_context(request), "oob": True})
    return redirect("catalog:cart")

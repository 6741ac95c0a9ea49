"""Add credits as an admin uses it: forms read from the rendered page, Back, a second choice,
limits Stripe would refuse, and input no form would send."""

import uuid
from html.parser import HTMLParser

import pytest
from django.db.models import F
from django.urls import reverse

from billing.checkout import FORM_REUSED, PRICE_CHANGED
from billing.models import CreditPackage, PriceList, Purchase, SubscriptionPlan, VolumeTier
from credits import services as ledger
from tests.billing.factories import PurchaseFactory
from tests.catalog.factories import CourseFactory
from tests.credits.factories import grant, hold, key

pytestmark = pytest.mark.django_db

ADD = reverse("billing:add_credits")
NEW = reverse("billing:purchase_create")


class _Forms(HTMLParser):
    """The purchase forms of a page, each as {input name: value}."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.cards: list[bool] = []  # whether each form is a package card's
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("action") == NEW:
            self._current = {}
            self.cards.append(attrs.get("data-testid") == "package-card")
        elif tag == "input" and self._current is not None and attrs.get("name"):
            self._current[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._current is not None:
            self.forms.append(self._current)
            self._current = None


def purchase_forms(response) -> list[dict]:
    parser = _Forms()
    parser.feed(response.content.decode())
    return parser.forms


def package_form(forms, credits: int) -> dict:
    pk = str(CreditPackage.objects.get(credits=credits).pk)
    return next(f for f in forms if f.get("package") == pk)


def quantity_form(forms) -> dict:
    """The "Any quantity" form: the one whose quantity the admin types."""
    return next(f for f in forms if "quantity" in f and "package" not in f and not f["quantity"])


def offer_forms(response) -> list[dict]:
    """The forms that buy an offer the page priced for what was asked (the suggestion, the
    quote's cheaper way), not the package cards."""
    parser = _Forms()
    parser.feed(response.content.decode())
    return [
        f for f, card in zip(parser.forms, parser.cards, strict=True) if not card and "total" in f
    ]


def test_each_choice_on_the_page_has_its_own_token(admin_client, prices):
    forms = purchase_forms(admin_client.get(ADD, {"need": 999}))
    tokens = [f["request_token"] for f in forms]
    # Six packages, the typed quantity, the suggestion, and the quote's cheaper way.
    assert len(tokens) == 9
    assert len(set(tokens)) == len(tokens)


def test_back_and_a_second_choice_buys_the_second_choice(admin_client, prices, fake_stripe):
    forms = purchase_forms(admin_client.get(ADD))
    first = admin_client.post(NEW, package_form(forms, 100))
    # Back to the same rendered page, then 12 credits typed into "Any quantity".
    second = admin_client.post(NEW, {**quantity_form(forms), "quantity": "12"})

    bought = {p.quantity: p for p in Purchase.objects.all()}
    assert sorted(bought) == [12, 100]
    assert bought[100].amount_minor == 100_000  # $1,000.00
    assert bought[12].amount_minor == 12_000  # $120.00
    assert first["Location"] == bought[100].checkout_url
    assert second["Location"] == bought[12].checkout_url != first["Location"]
    amounts = [
        c.params["line_items[0][price_data][unit_amount]"]
        for c in fake_stripe.calls_to("/v1/checkout/sessions")
    ]
    assert amounts == ["100000", "12000"]


def test_a_token_reused_for_another_purchase_is_refused(admin_client, prices, fake_stripe):
    token = str(uuid.uuid4())
    package = CreditPackage.objects.get(credits=100)
    first = admin_client.post(NEW, {"package": package.pk, "request_token": token})
    response = admin_client.post(NEW, {"quantity": 12, "request_token": token}, follow=True)

    assert response.redirect_chain == [(ADD, 302)]
    assert first["Location"] not in [url for url, _ in response.redirect_chain]
    assert FORM_REUSED in response.content.decode()
    assert "nothing was charged" in FORM_REUSED
    assert Purchase.objects.get().quantity == 100
    assert len(fake_stripe.calls_to("/v1/checkout/sessions")) == 1


def test_a_token_reused_for_another_package_or_quantity_is_refused(
    admin_client, prices, fake_stripe
):
    token = str(uuid.uuid4())
    admin_client.post(NEW, {"quantity": 12, "request_token": token})
    other_quantity = admin_client.post(NEW, {"quantity": 13, "request_token": token}, follow=True)
    other_package = admin_client.post(
        NEW,
        {"package": CreditPackage.objects.get(credits=1_170).pk, "request_token": token},
        follow=True,
    )
    for response in (other_quantity, other_package):
        assert FORM_REUSED in response.content.decode()
    assert Purchase.objects.count() == 1


def test_the_same_token_and_quantity_is_the_same_purchase(admin_client, prices, fake_stripe):
    form = {"quantity": 12, "request_token": str(uuid.uuid4())}
    first, second = admin_client.post(NEW, form), admin_client.post(NEW, form)
    assert first["Location"] == second["Location"] == Purchase.objects.get().checkout_url
    assert len(fake_stripe.calls_to("/v1/checkout/sessions")) == 1


@pytest.fixture
def simulated(settings):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""


@pytest.mark.parametrize("page", ["add_credits", "overview", "purchase", "simulated_checkout"])
def test_pages_that_move_money_are_never_served_from_history(
    admin_client, admin, organization, prices, simulated, page
):
    item = PurchaseFactory(organization=organization, created_by=admin)
    args = {"purchase": [item.pk], "simulated_checkout": [item.checkout_session_id]}
    response = admin_client.get(reverse(f"billing:{page}", args=args.get(page)))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_a_quantity_above_the_limit_is_refused_before_asking_stripe(
    admin_client, prices, fake_stripe
):
    response = admin_client.post(
        NEW, {"quantity": 117_648, "request_token": str(uuid.uuid4())}, follow=True
    )
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == ADD
    assert "at most 117,647 credits" in page
    assert "several purchases" in page and "contact sales" in page
    assert "Stripe did not answer" not in page
    assert fake_stripe.calls == []
    assert not Purchase.objects.exists()


def test_the_largest_quantity_is_still_bought(admin_client, prices, fake_stripe):
    admin_client.post(NEW, {"quantity": 117_647, "request_token": str(uuid.uuid4())})
    assert Purchase.objects.get().amount_minor == 99_999_950


def test_a_typed_quote_above_the_limit_says_so(admin_client, prices):
    response = admin_client.get(
        ADD, {"quantity": 200_000}, headers={"HX-Request": "true", "HX-Target": "quote"}
    )
    assert "at most 117,647 credits" in response.content.decode()


@pytest.mark.parametrize("need", [250_000, 2**31, 10**19])
def test_a_need_above_the_limit_is_explained_not_offered(admin_client, prices, need):
    response = admin_client.get(ADD, {"need": need, "next": "/credits/"})
    page = response.content.decode()
    assert 'data-testid="need-above-limit"' in page
    assert f"{need:,}" in page and "at most 117,647 credits" in page
    assert "contact sales" in page
    assert 'data-testid="suggestion"' not in page
    assert all(f.get("quantity") != str(need) for f in purchase_forms(response))


def test_available_and_earmarked_credits_are_separate_figures(
    admin_client, organization, manager, prices
):
    grant(organization, 1_500)
    pool = ledger.pool_account(organization=organization)
    course = ledger.course_account(organization=organization, course=CourseFactory())
    ledger.credits_transfer(
        source=pool, destination=course, quantity=1_200, idempotency_key=key("earmark")
    )
    hold(pool, 50)
    add = admin_client.get(ADD).content.decode()
    assert "You have 250 credits available, and 1,200 earmarked for courses and managers." in add
    billing = admin_client.get(reverse("billing:overview")).content.decode()
    assert "50 assigned · 250 available" in billing
    assert "1,200 earmarked for courses and managers" in billing


def test_no_earmarked_figure_when_there_is_none(admin_client, organization, prices):
    grant(organization, 3_000)
    add = admin_client.get(ADD).content.decode()
    assert "You have 3,000 credits available." in add
    assert "earmarked" not in add
    assert "earmarked" not in admin_client.get(reverse("billing:overview")).content.decode()


def test_numbers_read_with_separators_and_whole_percentages(admin_client, prices):
    page = admin_client.get(ADD, {"need": 9200}).content.decode()
    assert (
        "the <strong>9,356-credit package</strong> for <strong>$84,204.00</strong> (10% off)"
        in page
    )
    assert "7.5% off the list price" in page and "10% off the list price" in page
    assert ".0%" not in page
    assert "up to 117,647 credits" in page


# --- The cheapest way, and exactly what was shown -----------------------------------------


def amounts_sent(fake_stripe) -> list[str]:
    return [
        c.params["line_items[0][price_data][unit_amount]"]
        for c in fake_stripe.calls_to("/v1/checkout/sessions")
    ]


def test_typing_999_offers_1000_for_less_and_buys_exactly_that(admin_client, prices, fake_stripe):
    page = admin_client.get(ADD).content.decode()
    typed = quantity_form(purchase_forms_of(page))
    response = admin_client.post(NEW, {**typed, "quantity": "999", "next": "/credits/"})
    # Not bought behind the admin's back: back to the page, with the cheaper way quoted.
    assert response["Location"] == f"{ADD}?quantity=999&next=%2Fcredits%2F"
    assert not Purchase.objects.exists() and fake_stripe.calls == []
    shown = admin_client.get(response["Location"])
    body = shown.content.decode()
    assert "1,000 credits cost less than 999 ($9,750.00)" in body
    assert "<strong>1,000 credits</strong> for <strong>$9,750.00</strong>" in body
    assert "less than 999 ($9,990.00): $240.00 less, with 1 more credit." in body
    (offer,) = offer_forms(shown)
    assert (offer["quantity"], offer["total"], offer["next"]) == ("1000", "975000", "/credits/")
    checkout = admin_client.post(NEW, offer)
    purchase = Purchase.objects.get()
    assert checkout["Location"] == purchase.checkout_url
    assert (purchase.quantity, purchase.amount_minor, purchase.package) == (1_000, 975_000, None)
    assert amounts_sent(fake_stripe) == ["975000"]


def purchase_forms_of(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@pytest.mark.parametrize(
    ("need", "quantity", "total"),
    [
        (1, "1", "1000"),
        (999, "1000", "975000"),
        (9_000, "9000", "8325000"),
        # Above the 9,356 package its $9.00 rate applies to every quantity typed.
        (9_730, "9730", "8757000"),
        (9_999, "9999", "8999100"),
        # Above the 18,712 package, its $8.50.
        (19_999, "19999", "16999150"),
    ],
)
def test_the_suggestion_is_the_cheapest_way_and_buys_what_it_shows(
    admin_client, prices, fake_stripe, need, quantity, total
):
    response = admin_client.get(ADD, {"need": need, "next": "/credits/"})
    forms = offer_forms(response)
    # The suggestion (and the quote of the same quantity, when it is not the need itself):
    # one offer, never a package for these needs.
    assert {(f.get("quantity"), f.get("package"), f["total"]) for f in forms} == {
        (quantity, None, total)
    }
    page = response.content.decode()
    assert (
        "18,712-credit package"
        not in page.split('data-testid="suggestion"')[1].split("</article>")[0]
    )
    admin_client.post(NEW, forms[0])
    purchase = Purchase.objects.get()
    assert (str(purchase.quantity), str(purchase.amount_minor)) == (quantity, total)
    assert amounts_sent(fake_stripe) == [total]


def test_a_need_a_package_covers_cheapest_buys_the_package_with_its_true_saving(
    admin_client, prices, fake_stripe
):
    response = admin_client.get(ADD, {"need": 9200})
    page = response.content.decode()
    assert "costs less than 9,200 ($85,100.00): $896.00 less, with 156 more credits." in page
    # Against its own 9,356 credits typed ($86,543.00), not against the rate of 9,200.
    assert "You save $2,339.00 against 9,356 credits typed." in page
    form = offer_forms(response)[0]
    assert form["package"] == str(CreditPackage.objects.get(credits=9_356).pk)
    admin_client.post(NEW, form)
    assert Purchase.objects.get().amount_minor == 8_420_400
    assert amounts_sent(fake_stripe) == ["8420400"]


def test_a_total_that_changed_since_the_page_is_not_charged(admin_client, prices, fake_stripe):
    form = offer_forms(admin_client.get(ADD, {"need": 999}))[0]
    VolumeTier.objects.filter(min_quantity=1_000).update(unit_price_minor=990)
    response = admin_client.post(NEW, form, follow=True)
    assert PRICE_CHANGED in response.content.decode()
    assert not Purchase.objects.exists() and fake_stripe.calls == []


def test_a_larger_quantity_typed_directly_is_bought_as_typed(admin_client, prices, fake_stripe):
    admin_client.post(NEW, {"quantity": 1_000, "request_token": str(uuid.uuid4())})
    assert Purchase.objects.get().amount_minor == 975_000


@pytest.fixture
def yen(organization):
    organization.currency = "JPY"
    organization.save(update_fields=["currency"])
    price_list = PriceList.objects.create(currency="JPY", list_price_minor=1_000)
    price_list.tiers.create(min_quantity=100, unit_price_minor=900)
    return price_list


def test_yen_have_no_decimals_and_their_limit_is_in_yen(admin_client, yen, fake_stripe):
    page = admin_client.get(ADD, {"quantity": 3}).content.decode()
    assert "3 credits at 1,000 JPY each: <strong>3,000 JPY</strong>" in page
    assert "10.00 JPY" not in page and "30.00 JPY" not in page
    # 99,999,999 yen at ¥900 a credit: 111,111 credits.
    assert "up to 111,111 credits" in page
    above = admin_client.get(ADD, {"quantity": 111_112}).content.decode()
    assert "at most 111,111 credits: Stripe charges at most 99,999,999 JPY per payment" in above
    admin_client.post(NEW, {"quantity": 3, "request_token": str(uuid.uuid4())})
    assert amounts_sent(fake_stripe) == ["3000"]  # yen, as stored: never times or over 100


# --- Input no form would send -------------------------------------------------------------

HOSTILE = [
    "",
    "\x00",
    "12\x00",
    "x" * 10_000,
    "9" * 10_000,
    str(2**31),
    str(2**63),
    str(2**64),
    "-1",
    "-2147483649",
    "0",
    "١٢",  # Arabic-Indic digits: int() reads them as 12
    "\uff11\uff12",  # full-width digits
    "1e3",
    "12.5",
    " 12 ",
    "<script>alert(1)</script>",
    "/\x00",  # a local path as far as `next` is concerned, but no text column takes NUL
    "/" + "a" * 10_000,  # longer than any column it could be kept in
    "//evil.example/",
]


@pytest.fixture
def base(organization, admin, prices, fake_stripe):
    """Valid values for every parameter, so each test changes exactly one."""
    plan = SubscriptionPlan.objects.get(interval="month", rank=1)
    plan.stripe_price_id = "price_month_1"
    plan.save()
    return {
        "need": "9000",
        "quantity": "12",
        "total": "12000",
        "package": str(CreditPackage.objects.get(credits=100).pk),
        "plan": str(plan.pk),
        "request_token": str(uuid.uuid4()),
        "next": "/credits/",
    }


# (method, view, parameters it reads, extra headers)
PARAMETERS = [
    ("get", "add_credits", ["need", "quantity", "next"], {}),
    ("get", "add_credits", ["quantity"], {"HX-Request": "true", "HX-Target": "quote"}),
    ("post", "purchase_create", ["request_token", "quantity", "next"], {}),
    ("post", "purchase_create", ["request_token", "quantity", "total", "next"], {}),
    ("post", "purchase_create", ["request_token", "package", "next"], {}),
    ("post", "subscribe", ["plan", "request_token"], {}),
    ("post", "subscription_upgrade", ["plan"], {}),
]
CASES = [
    pytest.param(method, view, params, headers, name, value, id=f"{method}-{view}-{name}-{i}")
    for method, view, params, headers in PARAMETERS
    for name in params
    for i, value in enumerate(HOSTILE)
]


@pytest.mark.parametrize(("method", "view", "params", "headers", "name", "value"), CASES)
def test_hostile_parameters_never_crash_a_billing_view(
    admin_client, base, method, view, params, headers, name, value
):
    data = {param: base[param] for param in params} | {name: value}
    response = getattr(admin_client, method)(reverse(f"billing:{view}"), data, headers=headers)
    assert response.status_code < 500


@pytest.mark.parametrize("quantity", ["١٢", "\uff11\uff12", "12.5", "1e3"])
def test_a_quantity_not_in_plain_digits_buys_nothing(admin_client, base, quantity):
    response = admin_client.post(
        NEW, {"quantity": quantity, "request_token": base["request_token"]}, follow=True
    )
    assert "Enter a whole number" in response.content.decode()
    assert not Purchase.objects.exists()


def test_a_next_that_cannot_be_kept_is_dropped_not_stored(admin_client, base):
    admin_client.post(
        NEW, {"quantity": 12, "request_token": base["request_token"], "next": "/\x00"}
    )
    assert Purchase.objects.get().next_url == ""


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_parameters_on_pages_without_any(admin_client, base, value):
    for view in ("overview", "subscription_cancel", "customer_portal"):
        method = admin_client.get if view == "overview" else admin_client.post
        response = method(reverse(f"billing:{view}"), {"plan": value, "next": value})
        assert response.status_code < 500


@pytest.mark.parametrize("value", ["0", "99999999999999999999", str(2**63)])
def test_a_purchase_that_does_not_exist_is_a_404(admin_client, prices, value):
    assert admin_client.get(f"/billing/purchases/{value}/").status_code == 404


@pytest.mark.parametrize(
    "session_id",
    [
        "cs_sim_sub_x",
        "cs_sim_sub_1",
        "cs_sim_sub_1_",
        "cs_sim_sub_1_zz",
        "cs_sim_sub_x_" + "0" * 32,
        f"cs_sim_sub_{2**70}_" + "0" * 32,
        "cs_sim_sub_999999_" + "0" * 32,
        "cs_sim_",
        "cs_sim_\x00",
        "cs_sim_" + "a" * 10_000,
        "\x00",
        "١٢",
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_malformed_simulated_session_is_a_404(
    admin_client, prices, simulated, session_id, method
):
    url = reverse("billing:simulated_checkout", args=[session_id])
    response = getattr(admin_client, method)(url, {"action": "cancel"})
    assert response.status_code == 404


@pytest.mark.parametrize("signature", ["", "\x00", "t=1,v1=" + "0" * 10_000, "x" * 10_000])
def test_a_hostile_webhook_is_refused(client, fake_stripe, signature):
    response = client.post(
        reverse("billing:stripe_webhook"),
        "\x00" * 100,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )
    assert response.status_code == 400


def test_the_terms_say_the_last_usable_day_of_a_purchase_made_now(
    admin_client, organization, prices, time_machine
):
    # 23:30 on Mar 1, 2026 in New York is already Mar 2 in UTC: the day counted is local.
    time_machine.move_to("2026-03-02T04:30:00Z", tick=False)
    page = admin_client.get(ADD).content.decode()
    assert "stays usable for 365 days after its invoice date" in page
    assert "bought today, usable through Mar 1, 2027." in page


def test_a_package_repriced_since_the_page_is_not_charged(admin_client, prices, fake_stripe):
    forms = purchase_forms(admin_client.get(ADD))
    card = next(f for f in forms if f.get("package") and "total" in f)
    CreditPackage.objects.filter(pk=card["package"]).update(price_minor=F("price_minor") + 100)
    response = admin_client.post(NEW, card, follow=True)
    assert PRICE_CHANGED in response.content.decode()
    assert not Purchase.objects.exists() and fake_stripe.calls == []

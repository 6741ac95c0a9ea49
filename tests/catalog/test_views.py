import pytest
from django.urls import reverse

from accounts.models import Membership
from catalog.models import CartLine
from catalog.services import cart_add
from tests.accounts.factories import member
from tests.catalog.factories import CourseFactory, LevelFactory
from tests.credits.factories import grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def courses(db):
    excel = CourseFactory(title="Excel Essentials", category="Productivity")
    safety = CourseFactory(title="Workplace Safety", category="Compliance")
    CourseFactory(title="Hidden draft", category="Compliance", published=False)
    return {
        "excel": LevelFactory(course=excel),
        "safety": LevelFactory(course=safety, credit_cost=2),
    }


def test_search_and_category_filter_with_an_htmx_partial(admin_client, courses):
    url = reverse("catalog:index")
    assert "Excel Essentials" in admin_client.get(url, {"q": "excel"}).content.decode()
    page = admin_client.get(
        url, {"category": "Compliance"}, headers={"HX-Request": "true", "HX-Target": "results"}
    ).content.decode()
    assert "Workplace Safety" in page and "Excel" not in page and "Hidden draft" not in page
    assert "<h1>" not in page
    empty = admin_client.get(url, {"q": "zzz"}).content.decode()
    assert "No course matches" in empty


def test_adding_to_the_cart_updates_the_badge_without_a_reload(admin_client, courses):
    url = reverse("catalog:cart_add", args=[courses["excel"].pk])
    response = admin_client.post(url, {"seats": 3}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert 'id="cart-badge"' in body and 'hx-swap-oob="true"' in body and ">3<" in body
    admin_client.post(url, {"seats": 2}, headers={"HX-Request": "true"})
    assert CartLine.objects.get().seats == 5


def test_cart_totals_and_the_exact_shortfall_detour(admin_client, organization, courses):
    grant(organization, 5)
    admin_client.post(reverse("catalog:cart_add", args=[courses["safety"].pk]), {"seats": 4})
    page = admin_client.get(reverse("catalog:cart")).content.decode()
    assert 'data-testid="cart-total">8<' in page
    assert "/billing/add-credits/?need=3&amp;next=/catalog/cart/" in page


def test_changing_seats_and_removing_lines(admin_client, courses):
    admin_client.post(reverse("catalog:cart_add", args=[courses["excel"].pk]), {"seats": 1})
    line = CartLine.objects.get()
    url = reverse("catalog:cart_line", args=[line.pk])
    admin_client.post(url, {"seats": 7}, headers={"HX-Request": "true"})
    assert CartLine.objects.get().seats == 7
    response = admin_client.post(url, {"seats": 0}, follow=True)
    assert b"Choose between 1 and 100,000 seats" in response.content
    admin_client.post(url, {"action": "remove"})
    assert not CartLine.objects.exists()


def test_checkout_turns_the_cart_into_a_draft_plan_and_empties_it(
    admin_client, organization, courses
):
    grant(organization, 10)
    admin_client.post(reverse("catalog:cart_add", args=[courses["excel"].pk]), {"seats": 2})
    response = admin_client.post(
        reverse("training:checkout"), {"name": "Q1", "start_date": "2026-12-01"}, follow=True
    )
    assert b"Draft plan created" in response.content
    plan = response.context["plan"]
    assert (plan.name, plan.status, plan.items.get().seats) == ("Q1", "draft", 2)
    assert not CartLine.objects.exists()
    assert organization.pk == plan.organization_id


def test_carts_are_per_person(admin_client, organization, courses):
    other_admin = member(organization, Membership.Role.ADMIN, email="other@acme.test")
    cart_add(organization=organization, user=other_admin, level=courses["excel"], seats=4)
    line = CartLine.objects.get()
    assert (
        admin_client.post(
            reverse("catalog:cart_line", args=[line.pk]), {"action": "remove"}
        ).status_code
        == 404
    )
    assert "Your cart is empty" in admin_client.get(reverse("catalog:cart")).content.decode()


def test_adding_seats_again_never_passes_the_line_limit(admin_client, courses):
    url = reverse("catalog:cart_add", args=[courses["excel"].pk])
    admin_client.post(url, {"seats": 100_000})
    response = admin_client.post(url, {"seats": 100_000}, follow=True)
    assert "a line holds at most 100,000" in response.content.decode()
    assert CartLine.objects.get().seats == 100_000

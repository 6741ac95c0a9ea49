import pytest

from catalog.models import CartLine
from tests.accounts.factories import UserFactory
from tests.catalog.factories import LevelFactory
from tests.support.admin_forms import post_change
from tests.support.admin_lists import assert_opens_filtered_or_not, large_table_models

pytestmark = pytest.mark.django_db


def test_a_saved_cart_line_keeps_its_organization_and_user(
    client, organization, other_organization, admin, outsider
):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    line = CartLine.objects.create(organization=organization, user=admin, level=LevelFactory())
    response = post_change(
        client, line, organization=other_organization.pk, user=outsider.pk, seats=3
    )
    assert response.status_code == 302
    line.refresh_from_db()
    assert (line.organization, line.user, line.seats) == (organization, admin, 3)


def test_a_saved_level_stays_in_its_course(client):
    # A level change moves an enrollment within one course: its levels never move away.
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    level = LevelFactory()
    other = LevelFactory().course
    response = post_change(client, level, course=other.pk, name=level.name, order=level.order)
    assert response.status_code == 302
    level.refresh_from_db()
    assert level.course != other


@pytest.mark.parametrize("model", large_table_models("catalog"), ids=lambda m: m.__name__)
def test_support_opens_cart_lists_without_reading_whole_tables(
    client, organization, other_organization, admin, outsider, model
):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    CartLine.objects.create(organization=organization, user=admin, level=LevelFactory())
    CartLine.objects.create(organization=other_organization, user=outsider, level=LevelFactory())
    assert_opens_filtered_or_not(client, model, organization)

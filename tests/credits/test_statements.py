"""A redemption is a constant, small number of SQL statements however many lots it touches."""

import pytest

from credits import services
from tests.credits.factories import grant, redeem


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lots", [1, 20])
def test_a_redemption_costs_at_most_6_statements_with_begin_and_commit(
    organization, django_assert_max_num_queries, lots
):
    for _ in range(lots):
        grant(organization, 1)
    pool = services.pool_account(organization=organization)
    # Outside any test transaction, as in a request: no savepoints are counted.
    with django_assert_max_num_queries(6):
        redeem(pool, lots)

import uuid

import factory
from factory.django import DjangoModelFactory

from billing.models import Purchase
from tests.accounts.factories import UserFactory


class PurchaseFactory(DjangoModelFactory):
    class Meta:
        model = Purchase

    created_by = factory.SubFactory(UserFactory)
    request_token = factory.LazyFunction(uuid.uuid4)
    quantity = 100
    amount_minor = 100_000
    currency = "USD"
    checkout_session_id = factory.LazyFunction(lambda: f"cs_sim_{uuid.uuid4().hex}")

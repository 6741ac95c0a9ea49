import pytest

from billing import demo as billing_demo
from tests.billing.fake_stripe import Events, FakeStripe

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def prices(db):
    billing_demo.seed()


@pytest.fixture
def fake_stripe(settings):
    fake = FakeStripe()
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_HTTP_CLIENT = fake
    settings.SITE_URL = "https://credits.example.com"
    return fake


@pytest.fixture
def events(fake_stripe):
    return Events(secret=WEBHOOK_SECRET)

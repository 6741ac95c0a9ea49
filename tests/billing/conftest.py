import pytest
from celery._state import _set_task_join_will_block

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


@pytest.fixture(autouse=True)
def _simulated_secret_file(settings, tmp_path):
    # Each test's simulated checkout gets an install of its own, away from the checkout's
    # real .local/.
    settings.SIMULATED_WEBHOOK_SECRET_FILE = tmp_path / ".local" / "simulated-webhook-secret"


@pytest.fixture(autouse=True)
def _celery_join_flag():
    # An eager task sets Celery's process-wide "joining would block" flag while it runs and
    # puts back what it found: eager tasks in several threads at once (the webhook storms)
    # can leave it set, and a later test that waits on a real worker's result would refuse.
    yield
    _set_task_join_will_block(False)

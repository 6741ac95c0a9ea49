import pytest

from outbox import services
from tests.outbox.backends import FlakyBackend


@pytest.fixture
def smtp(settings):
    """The mail server, controllable: `smtp.down = True`, `smtp.failures = 3`,
    `smtp.refused = {...}`. Sent mail lands in django.core.mail.outbox as usual."""
    settings.EMAIL_BACKEND = "tests.outbox.backends.FlakyBackend"
    FlakyBackend.reset()
    yield FlakyBackend
    FlakyBackend.reset()


@pytest.fixture(autouse=True)
def _broker_not_paused(monkeypatch):
    # A test that made the broker fail must not leave this process skipping it.
    monkeypatch.setattr(services, "_broker_paused_until", 0.0)

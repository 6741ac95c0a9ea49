"""The web server of the fault tests: the test settings, except that tasks are really queued
through the broker, as in production, instead of run in the request."""

from config.settings.test import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False

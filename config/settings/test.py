"""The test suite: the same real PostgreSQL and Redis as development, its own Redis database."""

import os
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-secret-" + "x" * 40)
# Playwright's sync API runs an event loop in the test thread; the ORM calls made by the
# tests around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from .base import *  # noqa: F403
from .base import CACHES, DATABASES, REDIS_URL, env

# "replica" is default's own server and, once pytest-django has made it, default's test
# database: Django's test mirror, never created or migrated itself (`TEST: MIRROR`). On the
# same server, config/db_router.py keeps reads inside replica_reads() on default, so they see
# what a test wrote in its transaction. A real streaming replica (DATABASE_REPLICA_URL, or
# the local one on LOCAL_PG_REPLICA_PORT) is used by tests/config/test_replica.py alone,
# which points this alias at it for its own run.
DATABASES["replica"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}

# Tests never share Redis keys with a running `make run` on the same server (database 0),
# nor with each other: `make test` runs two pytest processes (pytest-xdist workers gw0, gw1,
# which also get test databases of their own), and each clears its cache and broker between
# tests. The workers' child processes (Celery worker, beat) inherit PYTEST_XDIST_WORKER and
# land in the same database as their worker.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_redis_db = 15 - int(_worker.removeprefix("gw")) if _worker else 15
_redis = urlsplit(env.str("TEST_REDIS_URL", default=REDIS_URL))
REDIS_URL = urlunsplit(_redis._replace(path=f"/{_redis_db}"))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "test",
        "OPTIONS": CACHES["default"]["OPTIONS"],  # the same time-outs as everywhere
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# Unit tests run tasks in-process; the integration tests start a real worker and beat.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# In memory; a real worker started by a test cannot share that memory, so the test names a
# backend that records to a file instead (tests/outbox/backends.py).
EMAIL_BACKEND = env.str(
    "TEST_EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend"
)
LOG_LEVEL = "WARNING"

# Static files come straight from static/ (no collectstatic outside production).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
# Every test client builds the middleware again; without autorefresh WhiteNoise would index
# every static file (Django admin's too) each time, about 50 ms a client. With it, a file is
# looked up when it is asked for, which only the browser journeys do.
WHITENOISE_AUTOREFRESH = True

# The beat integration test starts beat with a one-second schedule.
if env.bool("CELERY_BEAT_FAST", default=False):
    CELERY_BEAT_SCHEDULE = {
        "expire-lots-fast": {"task": "credits.tasks.expire_lots", "schedule": 1.0},
    }

"""`make bench`: development settings on a database of its own, with DEBUG off so that
Django does not keep every query in memory."""

import os
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_DEBUG", "false")

from .dev import *  # noqa: F403
from .dev import ALLOWED_HOSTS, DATABASES, REDIS_URL, env

_BENCH_DATABASE = env.str("BENCH_DATABASE_NAME", default="credits_bench")
# Every run drops and recreates this database: never the one DATABASE_URL names.
if DATABASES["default"]["NAME"] == _BENCH_DATABASE:
    raise ImproperlyConfigured(
        f"BENCH_DATABASE_NAME must differ from DATABASE_URL's database ({_BENCH_DATABASE}): "
        "the benchmarks drop and recreate it on every run."
    )
DATABASES["default"]["NAME"] = _BENCH_DATABASE
# A physical replica holds every database of its primary's server, this one included.
DATABASES["replica"]["NAME"] = _BENCH_DATABASE
LOG_LEVEL = "WARNING"

# The benchmark users (bench/big_org.py) log in with a known password: a cheap hasher, so
# that logging in 30 clients costs nothing next to the pages measured. The others stay, so
# any other hash still verifies.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# Pages are requested through Django's test client, whose host is "testserver".
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
# Confirm users hands its emails to Celery after each commit: onto a Redis database of the
# benchmarks' own, which no worker of `make run` reads (it would find no such messages).
CELERY_BROKER_URL = env.str(
    "BENCH_BROKER_URL", default=urlunsplit(urlsplit(REDIS_URL)._replace(path="/14"))
)

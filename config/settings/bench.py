"""`make bench`: development settings on a database of its own, with DEBUG off so that
Django does not keep every query in memory."""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_DEBUG", "false")

from .dev import *  # noqa: F403
from .dev import DATABASES, env

_BENCH_DATABASE = env.str("BENCH_DATABASE_NAME", default="credits_bench")
# Every run drops and recreates this database: never the one DATABASE_URL names.
if DATABASES["default"]["NAME"] == _BENCH_DATABASE:
    raise ImproperlyConfigured(
        f"BENCH_DATABASE_NAME must differ from DATABASE_URL's database ({_BENCH_DATABASE}): "
        "the benchmarks drop and recreate it on every run."
    )
DATABASES["default"]["NAME"] = _BENCH_DATABASE
LOG_LEVEL = "WARNING"

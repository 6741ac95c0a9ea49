"""`make bench`: development settings on a database of its own, with DEBUG off so that
Django does not keep every query in memory."""

import os

os.environ.setdefault("DJANGO_DEBUG", "false")

from .dev import *  # noqa: F403
from .dev import DATABASES, env

DATABASES["default"]["NAME"] = env.str("BENCH_DATABASE_NAME", default="credits_bench")
LOG_LEVEL = "WARNING"

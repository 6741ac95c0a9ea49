"""Settings shared by every environment. Values come from the environment (or a local .env);
a missing required value or a malformed one stops the process with a clear message."""

import os
from pathlib import Path

import environ
import structlog
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

from config.servers import ServerSettingError, derive  # noqa: E402 - needs .env read first

try:
    # The local servers' URLs, from LOCAL_PG_PORT / LOCAL_REDIS_PORT / PORT when not given:
    # the same derivation the Makefile uses, so `manage.py` and `celery` work with `.env` alone.
    SERVERS = derive(os.environ)
except ServerSettingError as error:
    raise ImproperlyConfigured(str(error)) from None

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """django-environ turns any unknown word into False; a typo in a security flag must not."""
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.str(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_filters",
    "csp",
    "django_structlog",
    "accounts",
    "credits",
    "catalog",
    "training",
    "billing",
    "outbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "accounts.middleware.CurrentOrganizationMiddleware",
    # Last, so that its process_exception sees a view's refusal first (config/errors.py).
    "config.errors.RefusalMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organization",
            ],
        },
    },
]

# "replica" is a streaming read replica of default's server when DATABASE_REPLICA_URL names
# one, else that same server: code may always name it. Only reads run inside
# config.db_router.replica_reads() go there, and only when it is another server.
DATABASES = {
    "default": env.db_url_config(SERVERS["DATABASE_URL"]),
    "replica": env.db_url_config(SERVERS["DATABASE_REPLICA_URL"]),
}
DATABASE_ROUTERS = ["config.db_router.PrimaryReplicaRouter"]
for _database in DATABASES.values():
    _database["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0)
    # A persistent connection that PostgreSQL closed (a restart, a failover) is found out at
    # the start of the next request and replaced, instead of failing that request.
    _database["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = SERVERS["REDIS_URL"]
# Only rate-limit counters live in the cache, and they fail open (accounts/ratelimits.py). A
# healthy Redis answers in well under a millisecond; these bounds keep a Redis that is down or
# no longer answering from holding a login for redis-py's default 5 s per command.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cac",
        "OPTIONS": {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
        },
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login attempts are counted in Redis (the default cache): per address and per email.
# The site login and the admin login share these counters (accounts/ratelimits.py).
RATELIMIT_USE_CACHE = "default"
LOGIN_RATE_PER_IP = env.str("LOGIN_RATE_PER_IP", default="20/m")
LOGIN_RATE_PER_EMAIL = env.str("LOGIN_RATE_PER_EMAIL", default="5/m")
# Password-reset requests, likewise: each sends a mail, so the windows are an hour.
PASSWORD_RESET_RATE_PER_IP = env.str("PASSWORD_RESET_RATE_PER_IP", default="20/h")
PASSWORD_RESET_RATE_PER_EMAIL = env.str("PASSWORD_RESET_RATE_PER_EMAIL", default="3/h")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# Seconds per SMTP socket operation: without it a mail server that stops answering holds a
# sender forever (the outbox's lease, outbox/services.py LEASE, assumes this bound).
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default="Credits Admin Center <no-reply@localhost>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SITE_URL = SERVERS["SITE_URL"]

# Stripe. Without a secret key, DEBUG runs a clearly marked simulated checkout instead
# (billing/stripe_gateway.py); production without a key offers no online payment.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Base address of a Stripe-compatible API server (blank: Stripe's own).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# A stripe.HTTPClient instance to send API requests through (tests inject a fake one).
STRIPE_HTTP_CLIENT = None
if STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY: credits arrive only "
        "through verified webhooks"
    )

# Admins are warned once when assigned (held) credits reach this share of the balance.
OVER_ASSIGNED_SHARE = env.float("OVER_ASSIGNED_SHARE", default=0.9)
# Days before a lot's expiry when its admins are reminded (each once).
EXPIRY_REMINDER_DAYS = [30, 7, 1]

# Lots expired per transaction (credits/services.py lots_expire): each batch locks the
# accounts of its organizations until it commits, so this bounds how long a redemption there
# can wait for the expiry (bench `redeem_during_expiry`), while larger batches spend less per
# lot on round trips and commits (bench `expire_lots`).
CREDITS_EXPIRY_BATCH_LOTS = env_int("CREDITS_EXPIRY_BATCH_LOTS", 1_000, minimum=1)

# Days a manager's invitation link stays valid; expiry releases its held credits.
INVITATION_VALID_DAYS = env_int("INVITATION_VALID_DAYS", 14, minimum=1)

X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Pico draws its form icons as data: SVGs.
        "img-src": [SELF, "data:"],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
    }
}

# Celery: JSON only; a task is acknowledged after it ran, so a worker lost mid-task hands it
# back to the queue (tasks are idempotent for that reason); every task has a time limit.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
# Nothing reads task results (accounts.tasks.ping, the health probe, asks for its own). Storing
# them also made every enqueue subscribe to a result channel first, which with Redis down
# retried 20 times a second apart: the 19 s a request hung before answering 500.
CELERY_TASK_IGNORE_RESULT = True
# Where a result is kept, reaching the result store is bounded like the broker (below).
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_REDIS_SOCKET_TIMEOUT = 5
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis hands a task that was taken but never acknowledged (its worker was killed) to another
# worker after `visibility_timeout` seconds. No task runs longer than the hard time limit, so
# twice that is safely past the longest task, and a killed worker's task comes back in
# minutes instead of Celery's default hour. A retry countdown longer than this is delivered
# again while it waits (an ETA task stays unacknowledged): tasks are idempotent for that too.
# The socket time-outs make a publish to a broker that is down or hung fail within seconds
# (the outbox then catches what it missed) instead of holding the request that queued it.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 2 * CELERY_TASK_TIME_LIMIT,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,  # above the 1 s a worker's BRPOP waits
}
CELERY_TIMEZONE = "UTC"
# The beat schedule is static: every periodic job is listed here.
CELERY_BEAT_SCHEDULE: dict = {
    "expire-lots-hourly": {"task": "credits.tasks.expire_lots", "schedule": crontab(minute="5")},
    "balance-alerts-hourly": {
        "task": "credits.tasks.balance_alerts",
        "schedule": crontab(minute="10"),
    },
    # Hourly: each organization's digest goes on the first run past 07:00 in its own zone.
    "expiry-reminders-hourly": {
        "task": "credits.tasks.expiry_reminders",
        "schedule": crontab(minute="25"),
    },
    # The dashboard's forecast (credits.forecast), stored so the page reads one row.
    "forecasts-refresh-hourly": {
        "task": "credits.tasks.forecasts_refresh",
        "schedule": crontab(minute="35"),
    },
    "ledger-audit-nightly": {
        "task": "credits.tasks.ledger_audit_nightly",
        "schedule": crontab(hour="3", minute="30"),
    },
    "expire-invitations-hourly": {
        "task": "training.tasks.expire_invitations",
        "schedule": crontab(minute="15"),
    },
    # Auto top-up starts from the ledger's signal; this catches one a lost process missed.
    "auto-top-ups-check": {
        "task": "billing.tasks.auto_top_ups_check",
        "schedule": crontab(minute="*/5"),
    },
    "start-reminders-hourly": {
        "task": "training.tasks.start_reminders",
        "schedule": crontab(minute="45"),
    },
    # Sends what is still unsent and due: emails whose queuing the broker missed, or that
    # failed and are past their backoff. A tick not started within the minute is dropped:
    # the next one does the same work.
    "outbox-sweep": {"task": "outbox.tasks.sweep", "schedule": 60.0, "options": {"expires": 55}},
    # Hourly, not on the 1st at a fixed UTC hour: overage months are the organization's
    # own, so an organization in Honolulu is due ten hours after one in London. Each run
    # queues only the organizations whose local month has ended with overage unbilled.
    "overage-invoices-hourly": {
        "task": "billing.tasks.overage_invoices_monthly",
        "schedule": crontab(minute="20"),
    },
    # Stripe events stored but never queued (the broker was down when the webhook answered).
    "stripe-events-requeue": {
        "task": "billing.tasks.stripe_events_requeue",
        "schedule": crontab(minute="*/10"),
    },
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_JSON = env_bool("LOG_JSON", False)
_shared_processors = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.TimeStamper(fmt="iso"),
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processor": structlog.processors.JSONRenderer()
            if LOG_JSON
            else structlog.dev.ConsoleRenderer(colors=False),
            "foreign_pre_chain": _shared_processors,
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django_structlog": {"level": "WARNING"}},
}
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        *_shared_processors,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    cache_logger_on_first_use=True,
)

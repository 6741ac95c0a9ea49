"""Production: every secret from the environment, HTTPS only. Passes `check --deploy` cleanly."""

import os

# Logs are JSON lines unless told otherwise.
os.environ.setdefault("LOG_JSON", "true")

from .base import *  # noqa: F403
from .base import DEBUG, env, env_bool, env_int

if DEBUG:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("DJANGO_DEBUG must be off with config.settings.production")

# TLS ends at the proxy in front of gunicorn; it tells us the original scheme.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# Hashed, compressed static files from `manage.py collectstatic`, served by whitenoise.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
for _database in DATABASES.values():  # noqa: F405 - default and replica
    _database["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    # Persistent connections outlive a PostgreSQL restart only if each request checks its
    # own first (also set in base.py; repeated here beside the setting that needs it).
    _database["CONN_HEALTH_CHECKS"] = True
# Behind the proxy, the client address for rate limiting comes from its header.
RATELIMIT_IP_META_KEY = env.str("RATELIMIT_IP_META_KEY", default="REMOTE_ADDR")

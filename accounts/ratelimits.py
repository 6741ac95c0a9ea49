"""Attempt counters for the forms that take a password or an email address: the site login,
the Django admin login and password reset. Counted in Redis (RATELIMIT_USE_CACHE) per client
address and per email address, with django-ratelimit's fixed windows.

Both log-in forms share the same counters: they check the same passwords, so switching forms
must not give an attacker a second budget.
"""

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def email_key(value: str) -> str:
    """An address as the account lookup sees it. Django's login form folds compatibility
    characters (NFKC: a fullwidth letter is the plain one) and the lookup ignores case, so
    the counter folds the same way, or each spelling of one address would get a budget."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


class _LoginEmail(forms.Form):
    username = forms.CharField(required=False, strip=False)


class _ResetEmail(forms.Form):
    email = forms.CharField(required=False, strip=False)


def _posted_email(form_class: type[forms.Form]) -> Callable[[str, HttpRequest], str]:
    """The counter's key: the posted address, read (before the page's own form checks it)
    through a form of that one field. A value no form accepts (a NUL byte) cannot be an
    account's address: those attempts share one counter."""
    (field,) = form_class.base_fields

    def key(group: str, request: HttpRequest) -> str:
        form = form_class(request.POST)
        return email_key(form.cleaned_data[field]) if form.is_valid() else "\x00invalid"

    return key


@dataclass(frozen=True)
class Limit:
    group: str
    key: str | Callable[[str, HttpRequest], str]
    # The name of the setting, read on every request so that tests can override it.
    rate_setting: str


LOGIN = (
    Limit("login-ip", "ip", "LOGIN_RATE_PER_IP"),
    Limit("login-email", _posted_email(_LoginEmail), "LOGIN_RATE_PER_EMAIL"),
)
PASSWORD_RESET = (
    Limit("password-reset-ip", "ip", "PASSWORD_RESET_RATE_PER_IP"),
    Limit("password-reset-email", _posted_email(_ResetEmail), "PASSWORD_RESET_RATE_PER_EMAIL"),
)


def exceeded(request: HttpRequest, limits: tuple[Limit, ...]) -> bool:
    """Count this POST against every limit and say whether any of them is now exceeded.

    Every counter is incremented even when an earlier one already refuses, so that a blocked
    address keeps counting against the email addresses it tries, and the other way round.
    """
    limited = False
    for limit in limits:
        limited |= _count(request, limit)
    return limited


def _count(request: HttpRequest, limit: Limit) -> bool:
    try:
        return is_ratelimited(
            request,
            group=limit.group,
            key=limit.key,
            rate=getattr(settings, limit.rate_setting),
            method="POST",
            increment=True,
        )
    except RedisError:
        # Fail open: refusing every login during a Redis outage would lock out users and
        # support alike, while passwords are still checked; the warning makes the gap visible.
        log.warning("Rate limit %s not applied: the cache is unreachable", limit.group)
        return False

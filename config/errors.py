"""Refusals, and the one place that turns them into what the user sees.

Every domain's "no" (the ledger's CreditsError, PlanRefused, PurchaseRefused, CartRefused, …)
is a `Refusal`: its message is written for the person who asked. Views catch one where they
have something better to do (the shortfall detour, a form shown again); any other that
reaches the middleware becomes a message and a way back, never a 500:

- an htmx request gets the message as a fragment swapped into the page's message region;
- any other request is sent back where it came from (a page of this site), or home.

What no code handled ends in `server_error`: a 503 "try again in a moment" when the database
was out of reach, the 500 page otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from django.contrib import messages
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import defaults

log = logging.getLogger(__name__)


class Refusal(Exception):
    """A refusal whose message is fit to show to the user who asked."""


def back_to(request: HttpRequest) -> str:
    """Where a refused request returns: the page it came from, if it is one of this site's."""
    referer = request.headers.get("Referer", "")
    if (
        referer
        and url_has_allowed_host_and_scheme(
            referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        and urlsplit(referer).path != request.path
    ):
        return referer
    # Home, never the refused page itself: a refused GET would redirect to itself forever.
    return "/"


def refusal_response(request: HttpRequest, refusal: Exception) -> HttpResponse:
    text = str(refusal)
    if getattr(request, "htmx", False):
        # The page stays as it is; only its message region changes (base.html's #messages).
        response = render(request, "_refusal.html", {"text": text}, status=200)
        response["HX-Retarget"] = "#messages"
        response["HX-Reswap"] = "innerHTML"
        return response
    messages.error(request, text)
    return redirect(back_to(request))


class RefusalMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, Refusal):
            log.info("refused %s %s: %s", request.method, request.path, exception)
            return refusal_response(request, exception)
        return None


# --- The database out of reach --------------------------------------------------------------

# What a client is told to wait before retrying: a restart or a failover takes seconds.
RETRY_AFTER_SECONDS = 5


def _database_unavailable(error: BaseException | None) -> bool:
    """The database could not be reached or gave up on the statement (restarting, failing
    over, out of connections, a lock or statement time-out): transient, not a bug. The
    chain is followed because the first error can surface as another one raised while it
    was handled."""
    for _ in range(5):
        if error is None:
            return False
        if isinstance(error, OperationalError | InterfaceError):
            return True
        error = error.__cause__ or error.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500 (config/urls.py). Django calls it for any exception that no view or
    middleware handled, from inside the `except`, in views and middleware alike: so a
    request that could not reach the database gets a 503 with Retry-After and a page saying
    to try again in a moment, and anything else the usual 500 page. Both are rendered
    without a request context: the database is not to be touched here. (With DEBUG on,
    Django shows its own traceback page instead.) The error itself is logged by Django
    with the response."""
    if _database_unavailable(sys.exc_info()[1]):
        response = HttpResponse(loader.render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return defaults.server_error(request)

"""Refusals, and the one place that turns them into what the user sees.

Every domain's "no" (the ledger's CreditsError, PlanRefused, PurchaseRefused, CartRefused, …)
is a `Refusal`: its message is written for the person who asked. Views catch one where they
have something better to do (the shortfall detour, a form shown again); any other that
reaches the middleware becomes a message and a way back, never a 500:

- an htmx request gets the message as a fragment swapped into the page's message region;
- any other request is sent back where it came from (a page of this site), or home.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

log = logging.getLogger(__name__)


class Refusal(Exception):
    """A refusal whose message is fit to show to the user who asked."""


def back_to(request: HttpRequest) -> str:
    """Where a refused request returns: the page it came from, if it is one of this site's."""
    referer = request.headers.get("Referer", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    if request.method == "GET":
        return request.path
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

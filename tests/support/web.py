"""The site served by a real gunicorn of a test's own, and a browser for it: cookies, CSRF
tokens read from the forms, redirects seen rather than followed."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support import processes
from tests.support.smtp import free_port


class WebServer:
    """gunicorn serving config.wsgi on a spare loopback port: one sync worker, so that one
    process serves every request with its own (persistent, if so configured) connections."""

    def __init__(self, log: Path, **env: str):
        self.port = free_port()
        self.log = log
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        args = [str(processes.VENV_BIN / "gunicorn"), "config.wsgi", "--bind"]
        args += [f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "1", "--timeout", "90"]
        self.process = processes.start(args, self.log, **self.env)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=5)  # noqa: S310
                return self
            except urllib.error.HTTPError:
                return self  # answering (a 503 names a service that is down on purpose)
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < deadline, self.log.read_text()[-3000:]
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)
            self.process = None


@dataclass
class Page:
    status: int
    headers: dict
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def field(self, name: str) -> str:
        found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', self.text)
        assert found, f"no field {name} in the page: {self.text[:2000]}"
        return found.group(1)


class _SeeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _SeeRedirects()
        )

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self.opener.open(request, timeout=60) as response:
                return Page(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as error:
            return Page(error.code, dict(error.headers), error.read().decode())

    def get(self, path: str) -> Page:
        return self._open(urllib.request.Request(self.base + path))  # noqa: S310 - loopback

    def post(self, path: str, form: Page, fields: dict[str, str]) -> Page:
        """Submit `fields` with the CSRF token of `form`, the page the form was on."""
        body = {**fields, "csrfmiddlewaretoken": form.field("csrfmiddlewaretoken")}
        request = urllib.request.Request(  # noqa: S310 - this test's own server on loopback
            self.base + path,
            data=urllib.parse.urlencode(body).encode(),
            method="POST",
            headers={"Referer": self.base + path},
        )
        return self._open(request)

    def log_in(self, email: str, password: str) -> Page:
        form = self.get("/accounts/login/")
        return self.post("/accounts/login/", form, {"username": email, "password": password})

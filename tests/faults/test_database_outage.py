"""PostgreSQL restarted or briefly down, on a real server of this test's own (initdb on a
spare port, run as the `postgres` user as root): with persistent connections (production's
CONN_MAX_AGE) the first request after a restart succeeds, and requests while the server is
down get the 503 "back in a moment" page with Retry-After, never a 500. The rest of the suite
never sees the outage: its database is another server's."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.smtp import free_port

PG_BIN = Path(
    max(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name),
    )
)


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    def __init__(self):
        # Under /tmp, which the postgres user can enter (a test's tmp_path may not be).
        self.root = Path(tempfile.mkdtemp(prefix="cac-pg-fault-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / args[0]), *args[1:]]), check=True, cwd="/",
                       capture_output=True, timeout=120)  # fmt: skip

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-locale")
        self.start()
        psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run([*psql, "-c", "CREATE ROLE credits LOGIN CREATEDB"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        subprocess.run([*psql, "-c", "CREATE DATABASE credits OWNER credits"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", options,
                  "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        # Stop and start (not `pg_ctl restart`, which forgets -l: the server would keep this
        # process's output pipe open and the call would never return).
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://credits@127.0.0.1:{self.port}/credits"

    def remove(self) -> None:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(stop), cwd="/", capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_postgres():
    server = PostgresServer()
    try:
        server.init()
        yield server
    finally:
        server.remove()


class Browser:
    """Cookies and the CSRF token, like a person's browser on the login page."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        login = urllib.request.Request(base + "/accounts/login/")  # noqa: S310 - loopback
        page = self._open(login)[2]
        self.token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def _open(self, request) -> tuple[int, dict, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def log_in(self) -> tuple[int, dict, str]:
        """A wrong password: the form is shown again, after the database was asked."""
        fields = {"username": "nobody@acme.test", "password": "wrong"}
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self.token}).encode()
        request = urllib.request.Request(  # noqa: S310 - this test's own server on loopback
            self.base + "/accounts/login/",
            data=body,
            method="POST",
            headers={"Referer": self.base + "/accounts/login/"},
        )
        return self._open(request)


def test_a_restart_or_a_short_outage_of_postgresql_never_answers_500(own_postgres, tmp_path):
    env = {
        "DATABASE_URL": own_postgres.url,
        # Persistent connections, as production: the case CONN_HEALTH_CHECKS is for.
        "DATABASE_CONN_MAX_AGE": "60",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
    }
    migrate = subprocess.run(
        [str(processes.VENV_BIN / "python"), "manage.py", "migrate", "--no-input"],
        cwd=processes.ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    server = subprocess.Popen(
        [str(processes.VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "1", "--timeout", "60"],
        cwd=processes.ROOT, env={**os.environ, **env},
        stdout=(tmp_path / "web.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # up within seconds
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)  # noqa: S310
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        browser = Browser(base)
        status, _, page = browser.log_in()  # opens the worker's persistent connection
        assert status == 200 and "Log in" in page

        own_postgres.restart()
        status, _, page = browser.log_in()
        assert status == 200, page[:500]  # the stale connection is replaced, not a 500

        own_postgres.stop()
        status, headers, page = browser.log_in()
        assert status == 503
        assert "Back in a moment" in page
        assert headers.get("Retry-After")

        own_postgres.start()
        status, _, _ = browser.log_in()
        assert status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Support can see what happened: the outage is logged with its cause.
    assert "OperationalError" in (tmp_path / "web.log").read_text()

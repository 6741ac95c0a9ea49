"""The local servers' URLs are derived in one place (config/servers.py) for the Makefile,
Django and Celery alike; `scripts/services.sh` finds a home for PostgreSQL's data wherever the
checkout lives and waits for a busy package manager."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from config import servers
from tests.support.processes import ROOT

SERVICES = ROOT / "scripts" / "services.sh"


def test_without_urls_the_local_servers_are_derived_from_their_ports():
    derived = servers.derive({"LOCAL_PG_PORT": "55123", "LOCAL_REDIS_PORT": "63123"})
    assert derived["DATABASE_URL"] == "postgres://credits@127.0.0.1:55123/credits"
    assert derived["REDIS_URL"] == "redis://127.0.0.1:63123/0"
    assert derived["USE_LOCAL_PG"] == "1"
    assert derived["USE_LOCAL_REDIS"] == "1"


def test_nothing_set_means_the_default_ports():
    derived = servers.derive({})
    assert derived["DATABASE_URL"] == "postgres://credits@127.0.0.1:54329/credits"
    assert derived["REDIS_URL"] == "redis://127.0.0.1:63799/0"
    assert derived["SITE_URL"] == "http://127.0.0.1:8000"


def test_given_urls_win_and_no_local_server_is_used():
    derived = servers.derive(
        {
            "DATABASE_URL": "postgres://app@db.internal:5432/app",
            "REDIS_URL": "redis://cache.internal:6379/2",
            "LOCAL_PG_PORT": "55123",
        }
    )
    assert derived["DATABASE_URL"] == "postgres://app@db.internal:5432/app"
    assert derived["REDIS_URL"] == "redis://cache.internal:6379/2"
    assert (derived["USE_LOCAL_PG"], derived["USE_LOCAL_REDIS"]) == ("0", "0")


def test_the_replica_is_the_primary_unless_given_and_the_local_one_takes_the_next_port():
    derived = servers.derive({"LOCAL_PG_PORT": "55123"})
    assert derived["DATABASE_REPLICA_URL"] == derived["DATABASE_URL"]
    assert derived["LOCAL_PG_REPLICA_PORT"] == "55124"
    given = servers.derive(
        {
            "DATABASE_URL": "postgres://app@db.internal:5432/app",
            "DATABASE_REPLICA_URL": "postgres://app@db-replica.internal:5432/app",
            "LOCAL_PG_REPLICA_PORT": "55200",
        }
    )
    assert given["DATABASE_REPLICA_URL"] == "postgres://app@db-replica.internal:5432/app"
    assert given["LOCAL_PG_REPLICA_PORT"] == "55200"
    with pytest.raises(servers.ServerSettingError, match="LOCAL_PG_REPLICA_PORT"):
        servers.derive({"LOCAL_PG_PORT": "65535"})


def test_port_moves_the_site_url_unless_the_site_url_is_given():
    assert servers.derive({"PORT": "8123"})["SITE_URL"] == "http://127.0.0.1:8123"
    given = {"PORT": "8123", "SITE_URL": "https://credits.example.com"}
    assert servers.derive(given)["SITE_URL"] == "https://credits.example.com"


@pytest.mark.parametrize("value", ["abc", "0", "70000", "80 80"])
def test_a_bad_port_is_refused_with_the_setting_name(value):
    with pytest.raises(servers.ServerSettingError, match="LOCAL_REDIS_PORT"):
        servers.derive({"LOCAL_REDIS_PORT": value})


def test_the_environment_wins_over_dotenv_and_empty_counts_as_unset(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nLOCAL_PG_PORT=55123\nexport LOCAL_REDIS_PORT='63123'\nPORT=\"8123\"\n"
    )
    derived = servers.load(environ={"PORT": "9000", "DATABASE_URL": ""}, dotenv=dotenv)
    assert derived["DATABASE_URL"] == "postgres://credits@127.0.0.1:55123/credits"
    assert derived["REDIS_URL"] == "redis://127.0.0.1:63123/0"
    assert derived["SITE_URL"] == "http://127.0.0.1:9000"


def _without_server_settings() -> dict[str, str]:
    names = {"DATABASE_URL", "REDIS_URL", "SITE_URL", "PORT", "DJANGO_SETTINGS_MODULE"}
    return {k: v for k, v in os.environ.items() if k not in names}


def test_manage_py_derives_the_urls_itself_with_nothing_exported():
    # What `.venv/bin/python manage.py ...` sees in a shell where only the ports are known.
    env = {**_without_server_settings(), "LOCAL_PG_PORT": "55123", "PORT": "8123"}
    script = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['PORT'], s.CACHES['default']['LOCATION'], s.SITE_URL)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    port, redis_url, site_url = result.stdout.splitlines()[-1].split()
    assert port == "55123"
    assert redis_url == f"redis://127.0.0.1:{env.get('LOCAL_REDIS_PORT', '63799')}/0"
    assert site_url == "http://127.0.0.1:8123"


def test_make_passes_port_on_to_the_web_server():
    env = {**_without_server_settings(), "PORT": "8123"}
    result = subprocess.run(
        [shutil.which("make"), "-n", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "honcho --procfile Procfile.dev start --port 8123" in result.stdout
    assert "runserver 127.0.0.1:$PORT" in (ROOT / "Procfile.dev").read_text()


def _copy_services(into: Path) -> Path:
    (into / "scripts").mkdir(parents=True)
    return Path(shutil.copy(SERVICES, into / "scripts" / "services.sh"))


def test_postgres_data_stays_in_the_checkout_when_the_postgres_user_can_reach_it(tmp_path):
    # tmp_path's own parents are private (mode 700); the system's temporary folder is open.
    checkout = Path(tempfile.gettempdir()) / f"checkout-{tmp_path.name}-{os.getpid()}"
    try:
        script = _copy_services(checkout)
        home = subprocess.run([script, "pg-home"], capture_output=True, text=True, check=True)
        assert home.stdout.strip() == f"{checkout}/.local/pg"
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


def test_postgres_data_moves_out_of_a_checkout_the_postgres_user_cannot_reach(tmp_path):
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    script_a = _copy_services(private / "app")
    script_b = _copy_services(private / "other" / "app")
    home_a = subprocess.run([script_a, "pg-home"], capture_output=True, text=True, check=True)
    home_b = subprocess.run([script_b, "pg-home"], capture_output=True, text=True, check=True)
    if os.geteuid() != 0:
        # Not root: the server runs as this user, who reaches the checkout by definition.
        assert home_a.stdout.strip() == f"{private}/app/.local/pg"
        return
    a, b = home_a.stdout.strip(), home_b.stdout.strip()
    assert a.startswith("/var/lib/postgresql/credits-admin-center/app-")
    assert b.startswith("/var/lib/postgresql/credits-admin-center/app-")
    assert a != b, "two checkouts must never share a cluster"
    assert oct(private.stat().st_mode & 0o777) == "0o700", "permissions are never loosened"


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'w'); fcntl.lockf(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True); time.sleep(float(sys.argv[2]))",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_apt_steps_wait_for_a_busy_package_manager_then_go_on(tmp_path):
    lock = tmp_path / "lock-frontend"
    holder = _hold_lock(lock, 3)
    started = time.monotonic()
    result = subprocess.run(
        [SERVICES, "apt-wait"],
        env={**os.environ, "APT_LOCK_FILES": str(lock), "APT_LOCK_WAIT": "60"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    holder.wait()
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2
    assert f"process {holder.pid}" in result.stderr


def test_a_package_manager_busy_too_long_is_named_and_nothing_runs(tmp_path):
    lock = tmp_path / "lock"
    holder = _hold_lock(lock, 30)
    try:
        result = subprocess.run(
            [SERVICES, "apt-wait"],
            env={**os.environ, "APT_LOCK_FILES": f"{tmp_path}/absent {lock}", "APT_LOCK_WAIT": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"still busy after 1s: process {holder.pid}" in result.stderr
    assert "APT_LOCK_WAIT" in result.stderr

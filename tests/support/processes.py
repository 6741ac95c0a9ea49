"""Start the project's own processes (Celery worker, beat, management commands) for tests."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must see what this test process sees:
    the test database (pytest-django renamed it) and the test Redis database."""
    db = settings.DATABASES["default"]
    url = urlsplit(settings.SERVERS["DATABASE_URL"])
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": urlunsplit(url._replace(path="/" + db["NAME"])),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def start(args: list[str], log: Path, **extra_env: str) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(
        args, cwd=ROOT, env=child_env(**extra_env), stdout=handle, stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def celery(*args: str) -> list[str]:
    return [str(VENV_BIN / "celery"), "-A", "config", *args]

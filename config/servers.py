"""Where the project's servers are: the one place that turns the local ports into URLs.

Django's settings (and so `manage.py`, Celery, pytest and the benchmarks) and the Makefile
(`python3 config/servers.py`, before any virtualenv exists) both ask this module, so a `.env`
holding only `LOCAL_PG_PORT`, `LOCAL_REDIS_PORT` and `PORT` means the same servers to all of
them. Standard library only, for that reason.

Precedence, as in django-environ: the process environment, then `.env`, then the defaults
(an empty value counts as unset).
An explicit `DATABASE_URL` / `REDIS_URL` means "use that server": the matching local one is
then neither started nor used. `DATABASE_REPLICA_URL` names a streaming read replica of the
`DATABASE_URL` server; without it the replica is that same server (`config/db_router.py` then
keeps every read on the primary). The local replica that `make test` starts for
`tests/config/test_replica.py` listens on `LOCAL_PG_REPLICA_PORT` (default: the next port).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULTS = {"LOCAL_PG_PORT": 54329, "LOCAL_REDIS_PORT": 63799, "PORT": 8000}
# The role and database `scripts/services.sh` creates in the local cluster.
LOCAL_DATABASE = "credits"


class ServerSettingError(ValueError):
    """A setting that cannot name a server; the message names the setting."""


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, `#` comments, optional `export ` and matching quotes: the subset of
    the format that django-environ reads and that `.env.example` uses."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _port(values: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = (values.get(name) or "").strip()
    if not raw:
        return DEFAULTS[name] if default is None else default
    try:
        port = int(raw)
    except ValueError:
        raise ServerSettingError(f"{name}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ServerSettingError(f"{name}={port} is not a port number (1-65535)")
    return port


def _seconds(values: Mapping[str, str], name: str, default: int) -> int:
    raw = (values.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ServerSettingError(f"{name}={raw!r} is not a whole number of seconds")
    return int(raw)


def derive(values: Mapping[str, str]) -> dict[str, str]:
    """Every server setting, filled in from the local ports where not given."""
    pg_port = _port(values, "LOCAL_PG_PORT")
    redis_port = _port(values, "LOCAL_REDIS_PORT")
    web_port = _port(values, "PORT")
    replica_port = _port(values, "LOCAL_PG_REPLICA_PORT", pg_port + 1)
    if replica_port > 65535:
        raise ServerSettingError(
            f"LOCAL_PG_PORT={pg_port} leaves no next port for the local replica: "
            "set LOCAL_PG_REPLICA_PORT"
        )
    database_url = (values.get("DATABASE_URL") or "").strip()
    redis_url = (values.get("REDIS_URL") or "").strip()
    local_database_url = f"postgres://{LOCAL_DATABASE}@127.0.0.1:{pg_port}/{LOCAL_DATABASE}"
    return {
        "DATABASE_URL": database_url or local_database_url,
        # Blank: the primary itself, so that "replica" always names a database.
        "DATABASE_REPLICA_URL": (values.get("DATABASE_REPLICA_URL") or "").strip()
        or database_url
        or local_database_url,
        "REDIS_URL": redis_url or f"redis://127.0.0.1:{redis_port}/0",
        "USE_LOCAL_PG": "0" if database_url else "1",
        "USE_LOCAL_REDIS": "0" if redis_url else "1",
        "LOCAL_PG_PORT": str(pg_port),
        "LOCAL_PG_REPLICA_PORT": str(replica_port),
        "LOCAL_REDIS_PORT": str(redis_port),
        "PORT": str(web_port),
        "SITE_URL": (values.get("SITE_URL") or "").strip() or f"http://127.0.0.1:{web_port}",
        # Not a server, but `make` reads settings only from here (scripts/services.sh).
        "APT_LOCK_WAIT": str(_seconds(values, "APT_LOCK_WAIT", 600)),
    }


def load(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> dict[str, str]:
    """The environment over `.env`, then derived. An empty variable counts as unset, so
    `DATABASE_URL= make test` still means the local server."""
    environ = os.environ if environ is None else environ
    merged = {**read_dotenv(dotenv or ROOT / ".env")}
    merged.update({name: value for name, value in environ.items() if value.strip()})
    return derive(merged)


def main() -> int:
    """For the Makefile: one `NAME=value` per line (no value holds a space)."""
    try:
        derived = load()
    except ServerSettingError as error:
        print(f"config/servers.py: {error}", file=sys.stderr)
        return 1
    for name, value in derived.items():
        if any(c.isspace() for c in value):
            print(f"config/servers.py: {name} must not contain spaces", file=sys.stderr)
            return 1
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks share: their databases, PostgreSQL's own tools, the JSON line."""

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob

import psycopg
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connections


def database_params(name: str | None = None) -> dict:
    db = settings.DATABASES["default"]
    params = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": str(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "dbname": name or db["NAME"],
    }
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    return params


def ensure_database(name: str) -> None:
    """Create the database if missing (the maintenance database is `postgres`)."""
    with psycopg.connect(**database_params("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


# The database the settings name: every benchmark but the big-organization ones runs there.
_BENCH_DATABASE = settings.DATABASES["default"]["NAME"]


def bench_database_name() -> str:
    return _BENCH_DATABASE


def drop_database(conn: psycopg.Connection, name: str) -> None:
    # FORCE cannot end a superuser's session, and autovacuum works on the last run's
    # million-row tables for a while after it: wait for it to move on.
    for attempt in range(120):
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 119:
                raise
            time.sleep(1)


def switch_database(name: str) -> None:
    """Point the default connection at another database of the same server (from the next
    query on); forked workers inherit it."""
    if settings.DATABASES["default"]["NAME"] == name:
        return
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name
    # Content type ids are cached per alias, not per database.
    ContentType.objects.clear_cache()


@contextmanager
def using_database(name: str) -> Iterator[None]:
    previous = settings.DATABASES["default"]["NAME"]
    switch_database(name)
    try:
        yield
    finally:
        switch_database(previous)


def use_bench_database() -> None:
    switch_database(_BENCH_DATABASE)


def prepare_django_database() -> None:
    """A fresh database for every run: leftovers of earlier runs would make the tables, and
    so the figures, grow from one run to the next."""
    use_bench_database()
    connections.close_all()
    with psycopg.connect(**database_params("postgres"), autocommit=True) as conn:
        drop_database(conn, _BENCH_DATABASE)
        conn.execute(f'CREATE DATABASE "{_BENCH_DATABASE}"')
    call_command("migrate", verbosity=0, interactive=False)


def pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if not found:
        raise SystemExit(f"{name} not found: install PostgreSQL's server package")
    return found


def report(**figures) -> None:
    print(json.dumps(figures), flush=True)

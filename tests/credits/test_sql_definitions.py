"""The database's ledger functions and triggers are exactly what credits/sql/ defines.

Each file is executed again (as a migration runs it, in a savepoint that is rolled back) and
what PostgreSQL then holds is compared with what it held before: a file changed without a
migration installing it again, a function or trigger that lives only in a migration, or a
file nothing installs, each fails here."""

import re
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection, transaction

import credits

SQL_DIR = Path(credits.__file__).resolve().parent / "sql"
FILES = sorted(SQL_DIR.glob("*.sql"))

_DOLLAR_QUOTED = re.compile(r"\$\$.*?\$\$", re.S)
_COMMENT = re.compile(r"--[^\n]*")
_FUNCTION = re.compile(r"CREATE OR REPLACE FUNCTION\s+(\w+)\s*\(", re.I)
_TRIGGER = re.compile(r"CREATE OR REPLACE TRIGGER\s+(\w+)\s.*?\bON\s+(\w+)", re.I | re.S)


def _statements(path: Path) -> list[str]:
    """The file's statements with function bodies and comments left out."""
    code = _COMMENT.sub("", _DOLLAR_QUOTED.sub("$$ $$", path.read_text()))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def _objects(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    functions, triggers = [], []
    for statement in _statements(path):
        if match := _FUNCTION.match(statement):
            functions.append(match.group(1))
        elif match := _TRIGGER.match(statement):
            triggers.append((match.group(1), match.group(2)))
    return functions, triggers


def _definitions(cursor, functions, triggers) -> dict:
    """What the database holds under those names: every overload of each function (a changed
    signature that left the old one behind shows as two), and each trigger with its state."""
    found = {}
    for name in functions:
        cursor.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema() AND p.proname = %s",
            [name],
        )
        found[f"function {name}"] = sorted(row[0] for row in cursor.fetchall())
    for name, table in triggers:
        cursor.execute(
            "SELECT pg_get_triggerdef(t.oid), t.tgenabled FROM pg_trigger t"
            " WHERE t.tgname = %s AND t.tgrelid = %s::regclass AND NOT t.tgisinternal",
            [name, table],
        )
        found[f"trigger {name} on {table}"] = cursor.fetchall()
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_each_file_holds_only_statements_that_can_run_again(path):
    # Migrations install a file again whenever it changes: only CREATE OR REPLACE keeps that
    # safe (a CREATE would fail, anything else would run twice).
    statements = _statements(path)
    assert statements
    for statement in statements:
        assert re.match(r"CREATE OR REPLACE (FUNCTION|TRIGGER)\s", statement), statement[:80]
    functions, _ = _objects(path)
    # One file per function (with its triggers), named after it. daily_totals.sql predates the
    # rule and keeps its name.
    assert len(functions) == 1
    assert path.stem in (functions[0], functions[0].removeprefix("credits_"))


@pytest.mark.django_db
@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_the_database_holds_what_the_file_defines(path):
    functions, triggers = _objects(path)
    with connection.cursor() as cursor:
        installed = _definitions(cursor, functions, triggers)
        with transaction.atomic():
            # As a migration's RunSQL runs it: split by Django, comments outside bodies gone.
            for statement in connection.ops.prepare_sql_script(path.read_text()):
                cursor.execute(statement)
            defined = _definitions(cursor, functions, triggers)
            transaction.set_rollback(True)
    assert installed == defined, f"{path.name} differs from the database: install it again"
    for name, table in triggers:
        ((_, enabled),) = installed[f"trigger {name} on {table}"]
        assert enabled == "O", f"trigger {name} is not enabled"


@pytest.mark.django_db
def test_every_function_and_trigger_of_the_database_is_defined_in_exactly_one_file():
    functions, triggers = Counter(), Counter()
    for path in FILES:
        file_functions, file_triggers = _objects(path)
        functions.update(file_functions)
        triggers.update(name for name, _ in file_triggers)
    assert [name for name, count in (functions + triggers).items() if count > 1] == []
    with connection.cursor() as cursor:
        # Functions of extensions (none today) are theirs, not ours.
        cursor.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema() AND NOT EXISTS ("
            "   SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
        )
        in_database = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
        )
        triggers_in_database = {row[0] for row in cursor.fetchall()}
    assert in_database == set(functions)
    assert triggers_in_database == set(triggers)

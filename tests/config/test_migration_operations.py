"""A concurrent index migration stopped halfway can be run again
(config/migration_operations.py)."""

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

pytestmark = pytest.mark.django_db(transaction=True)


def _exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
        return cursor.fetchone() is not None


def test_a_rerun_skips_an_index_already_built_and_builds_one_missing():
    loader = MigrationLoader(connection)
    migration = loader.get_migration("training", "0005_list_indexes")
    before = loader.project_state(("training", "0004_item_assignments"))
    after = loader.project_state(("training", "0005_list_indexes"))
    # As if the first run built the first index and stopped before the second.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX plan_org_newest")
    assert _exists("assignment_manager_newest") and not _exists("plan_org_newest")
    with connection.schema_editor(atomic=False) as editor:
        for operation in migration.operations:  # a plain CREATE INDEX would fail on the first
            operation.database_forwards("training", editor, before, after)
    assert _exists("assignment_manager_newest") and _exists("plan_org_newest")

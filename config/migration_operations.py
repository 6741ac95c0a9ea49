"""Migration operations of the project's own. Migrations import them: keep their behaviour
stable once a migration uses them."""

from django.contrib.postgres.operations import AddIndexConcurrently


class AddIndexConcurrentlyResumable(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY that a re-run can finish. Such a migration runs outside a
    transaction: if it stops halfway (a killed deploy, a lock time-out), the indexes built
    so far stay, and one being built is left INVALID, while Django records nothing. Run
    again, this skips an index already valid, and drops and builds again an invalid one."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s",
                [self.index.name],
            )
            found = cursor.fetchone()
        if found is not None:
            if found[0]:
                return
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}"
            )
        super().database_forwards(app_label, schema_editor, from_state, to_state)

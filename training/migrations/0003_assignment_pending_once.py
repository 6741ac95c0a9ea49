"""At most one pending invitation per (organization, course, email), enforced by the database.

The course is copied onto each assignment from its level (a partial unique index cannot reach
through a foreign key), and re-invites now remember the links they replaced.
"""

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
    UPDATE training_assignment a SET course_id = l.course_id
    FROM catalog_level l WHERE l.id = a.level_id
"""

# Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: the rows updated above leave
# foreign-key checks pending until commit, and PostgreSQL refuses to ALTER a table with
# pending checks. Switching to IMMEDIATE runs them now; then the default is restored.
CHECK_NOW = ["SET CONSTRAINTS ALL IMMEDIATE", "SET CONSTRAINTS ALL DEFERRED"]


def release_duplicate_pending(apps, schema_editor):
    """The constraint cannot be created while an address still has two pending invitations
    to one course (what the old invite allowed). Keep the one sent last, whose link is in the
    learner's latest email; cancel the others and give their held credits back.

    Releasing a hold goes through the ledger's own API, the only code allowed to move credits,
    so this imports live code. It runs only on a database that has such duplicates, i.e. once,
    on deployment of this migration; a fresh or clean database never reaches the import."""
    Assignment = apps.get_model("training", "Assignment")
    pending = Assignment.objects.filter(status="invited")
    groups = list(
        pending.values("organization_id", "course_id", "email")
        .annotate(count=models.Count("id"))
        .filter(count__gt=1)
    )
    if not groups:
        return
    from credits import services as ledger
    from credits.models import Hold

    for group in groups:
        rows = list(
            pending.filter(
                organization_id=group["organization_id"],
                course_id=group["course_id"],
                email=group["email"],
            ).order_by(models.F("expires_at").desc(nulls_last=True), "-id")
        )
        for extra in rows[1:]:
            if extra.hold_id:
                hold = Hold.objects.get(pk=extra.hold_id)
                if hold.status == Hold.Status.ACTIVE:
                    ledger.hold_release(hold=hold)
            Assignment.objects.filter(pk=extra.pk).update(status="cancelled")


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_cartline"),
        # The duplicate release above runs the ledger code of this state of the schema.
        ("credits", "0008_reversals"),
        ("training", "0002_managers_and_assignments"),
    ]

    operations = [
        migrations.AddField(
            model_name="assignment",
            name="course",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="catalog.course",
            ),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.RunPython(release_duplicate_pending, migrations.RunPython.noop),
        migrations.RunSQL(CHECK_NOW, reverse_sql=migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="assignment",
            name="course",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="catalog.course",
            ),
        ),
        migrations.AddField(
            model_name="assignment",
            name="replaced_tokens",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.UUIDField(), blank=True, default=list, size=None
            ),
        ),
        migrations.AddIndex(
            model_name="assignment",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["replaced_tokens"], name="assignment_replaced_tokens"
            ),
        ),
        migrations.AddConstraint(
            model_name="assignment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "invited")),
                fields=("organization", "course", "email"),
                name="assignment_pending_once",
            ),
        ),
    ]

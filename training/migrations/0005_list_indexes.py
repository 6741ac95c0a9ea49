from django.conf import settings
from django.db import migrations, models

from config.migration_operations import AddIndexConcurrentlyResumable


class Migration(migrations.Migration):
    # CONCURRENTLY builds the indexes without locking out writes to the plans and
    # invitations of a live system; it cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("accounts", "0001_initial"),
        ("catalog", "0002_cartline"),
        ("credits", "0015_take_entries_at_once"),
        ("training", "0004_item_assignments"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyResumable(
            model_name="assignment",
            index=models.Index(
                fields=["organization", "manager", "course", "-created_at", "-id"],
                name="assignment_manager_newest",
            ),
        ),
        AddIndexConcurrentlyResumable(
            model_name="trainingplan",
            index=models.Index(
                fields=["organization", "-created_at", "-id"], name="plan_org_newest"
            ),
        ),
    ]

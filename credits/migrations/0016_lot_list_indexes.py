from django.db import migrations, models

from config.migration_operations import AddIndexConcurrentlyResumable

PAST = models.Q(("expired_at__isnull", True), ("revoked_at__isnull", True), _negated=True)


class Migration(migrations.Migration):
    # Built CONCURRENTLY: lots are written by every purchase and expiry of a live system.
    atomic = False

    dependencies = [
        ("accounts", "0001_initial"),
        ("credits", "0015_take_entries_at_once"),
    ]

    operations = [
        AddIndexConcurrentlyResumable(
            model_name="lot",
            index=models.Index(
                condition=models.Q(("expired_at__isnull", True), ("revoked_at__isnull", True)),
                fields=["organization", "expires_at", "invoiced_at", "id"],
                name="lot_current_in_order",
            ),
        ),
        AddIndexConcurrentlyResumable(
            model_name="lot",
            index=models.Index(
                condition=PAST,
                fields=["organization", "expires_at", "invoiced_at", "id"],
                name="lot_past_in_order",
            ),
        ),
    ]

import django.db.models.deletion
from django.db import migrations, models

# A reversal gives credits back from one redemption or capture into the lots it took them
# from; it points at that original so that what remains reversible can be summed. Adding a
# nullable column writes no row, so the append-only triggers (0002) are not involved.


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0007_ledger_at_scale"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgertransaction",
            name="reversal_of",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reversals",
                to="credits.ledgertransaction",
            ),
        ),
        migrations.AlterField(
            model_name="ledgertransaction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("grant", "Credits added"),
                    ("redeem", "Redeemed"),
                    ("hold", "Assigned (held)"),
                    ("capture", "Assignment started (deducted)"),
                    ("release", "Assignment released"),
                    ("transfer", "Allocated"),
                    ("expire", "Expired"),
                    ("revoke", "Revoked"),
                    ("adjust", "Support adjustment"),
                    ("reverse", "Reversed"),
                ],
                max_length=8,
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgertransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("kind", "reverse"), ("reversal_of__isnull", False)),
                    models.Q(
                        models.Q(("kind", "reverse"), _negated=True),
                        ("reversal_of__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="ledger_txn_reversal_of_reverse",
            ),
        ),
    ]

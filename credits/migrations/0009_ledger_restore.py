from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("credits", "0008_reversals")]

    operations = [
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
                    ("restore", "Restored"),
                ],
                max_length=8,
            ),
        ),
    ]

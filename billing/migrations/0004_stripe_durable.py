import django.db.models.deletion
import django_fsm
from django.db import migrations, models


def events_already_processed(apps, schema_editor):
    """Events stored before this migration were processed in the request that stored them."""
    StripeEvent = apps.get_model("billing", "StripeEvent")
    StripeEvent.objects.filter(processed_at__isnull=False).update(status="processed", attempts=1)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("billing", "0003_money_64bit"),
        ("credits", "0009_ledger_restore"),
    ]

    operations = [
        migrations.CreateModel(
            name="Payment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("reference", models.CharField(max_length=255, unique=True)),
                ("charge_id", models.CharField(blank=True, max_length=255)),
                ("currency", models.CharField(blank=True, max_length=3)),
                (
                    "amount_minor",
                    models.BigIntegerField(blank=True, help_text="The charge's amount.", null=True),
                ),
                ("refunded_minor", models.BigIntegerField(default=0)),
                ("refund_credits", models.PositiveIntegerField(default=0)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.AddField(
            model_name="stripeevent",
            name="attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="stripeevent",
            name="created",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="stripeevent",
            name="last_error",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="stripeevent",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Waiting to be processed"),
                    ("processed", "Processed"),
                    ("failed", "Failed"),
                ],
                db_index=True,
                default="pending",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="subscription",
            name="pending_plan",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billing.subscriptionplan",
            ),
        ),
        migrations.AddField(
            model_name="subscription",
            name="pending_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="subscription",
            name="state_as_of",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="purchase",
            name="status",
            field=django_fsm.FSMField(
                choices=[
                    ("pending", "Waiting for payment"),
                    ("paid", "Paid"),
                    ("failed", "Payment failed"),
                    ("cancelled", "Cancelled"),
                    ("partially_refunded", "Partially refunded"),
                    ("refunded", "Refunded"),
                    ("disputed", "Disputed"),
                ],
                default="pending",
                max_length=50,
            ),
        ),
        migrations.CreateModel(
            name="Dispute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dispute_id", models.CharField(max_length=255, unique=True)),
                ("amount_minor", models.BigIntegerField()),
                ("currency", models.CharField(max_length=3)),
                ("status", models.CharField(max_length=32)),
                ("status_as_of", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "restoration",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="credits.ledgertransaction",
                    ),
                ),
                (
                    "revocation",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="credits.ledgertransaction",
                    ),
                ),
                (
                    "payment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="disputes",
                        to="billing.payment",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="SubscriptionInvoice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("invoice_id", models.CharField(max_length=255, unique=True)),
                ("billing_reason", models.CharField(blank=True, max_length=40)),
                ("period_start", models.DateTimeField(blank=True, null=True)),
                ("amount_paid_minor", models.BigIntegerField(default=0)),
                ("currency", models.CharField(blank=True, max_length=3)),
                ("payment_reference", models.CharField(blank=True, db_index=True, max_length=255)),
                (
                    "status",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("paid", "Paid"),
                            ("partially_refunded", "Partially refunded"),
                            ("refunded", "Refunded"),
                            ("disputed", "Disputed"),
                        ],
                        max_length=20,
                    ),
                ),
                ("note", models.CharField(blank=True, max_length=255)),
                ("paid_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "lot",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscription_invoice",
                        to="credits.lot",
                    ),
                ),
                (
                    "subscription",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="invoices",
                        to="billing.subscription",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="OverageInvoice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("month", models.CharField(help_text="YYYY-MM", max_length=7)),
                ("quantity", models.PositiveIntegerField()),
                ("amount_minor", models.PositiveBigIntegerField()),
                ("currency", models.CharField(max_length=3)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("invoicing", "Being invoiced"),
                            ("open", "Invoiced"),
                            ("paid", "Paid"),
                            ("payment_failed", "Payment failed"),
                        ],
                        db_index=True,
                        default="invoicing",
                        max_length=16,
                    ),
                ),
                ("stripe_invoice_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("hosted_invoice_url", models.URLField(blank=True, max_length=2000)),
                ("attempt_count", models.PositiveIntegerField(default=0)),
                ("next_payment_attempt", models.DateTimeField(blank=True, null=True)),
                ("failed_at", models.DateTimeField(blank=True, null=True)),
                ("paid_at", models.DateTimeField(blank=True, null=True)),
                ("status_as_of", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="overage_invoices",
                        to="accounts.organization",
                    ),
                ),
            ],
            options={
                "ordering": ["-month"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("organization", "month"), name="overage_invoice_once"
                    )
                ],
            },
        ),
        migrations.RunPython(events_already_processed, migrations.RunPython.noop),
    ]

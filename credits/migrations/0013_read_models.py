"""Read models the database keeps: daily totals per account and kind (written by a trigger
on the ledger's entries, credits/sql/daily_totals.sql), the stored forecast, the audit's runs,
and an index of each lot's "due but not yet marked expired" window for balances on a date."""

from pathlib import Path

import django.db.models.deletion
from django.db import migrations, models

DAILY_TOTALS_SQL = (Path(__file__).resolve().parent.parent / "sql" / "daily_totals.sql").read_text()

# The entries written before this migration, grouped the way the trigger groups new ones. The
# table is locked against writers first: none can slip between the trigger and the backfill.
BACKFILL_SQL = """
LOCK TABLE credits_ledgerentry IN SHARE MODE;
INSERT INTO credits_dailytotal (organization_id, account_id, day, kind, gained, lost)
SELECT a.organization_id, e.account_id, (e.created_at AT TIME ZONE 'UTC')::date, t.kind,
       COALESCE(SUM(e.quantity) FILTER (WHERE e.quantity > 0), 0),
       COALESCE(SUM(e.quantity) FILTER (WHERE e.quantity < 0), 0)
FROM credits_ledgerentry e
JOIN credits_ledgertransaction t ON t.id = e.transaction_id
JOIN credits_account a ON a.id = e.account_id
GROUP BY 1, 2, 3, 4;
"""

# A lot is worth nothing from its expiry on, but its credits leave the ledger only when the
# job marks it (expired_at). Between the two its entries still add up to what it had: "the
# balance at t" subtracts the lots whose window [expires_at, expired_at] contains t. GiST
# finds those few lots among every lot ever sold. A lot not marked yet has an open window
# (NULL upper bound); greatest(): a window never runs backwards, whatever a support tool does
# to the dates (a range whose upper bound is below its lower one is an error on write). The
# expression is spelled the same in credits.selectors._DUE_AT_SQL, or the index goes unused.
LOT_WINDOW_SQL = """
CREATE INDEX lot_due_window ON credits_lot USING gist (
    tstzrange(expires_at, CASE WHEN expired_at IS NOT NULL
                               THEN greatest(expired_at, expires_at) END, '[]')
) WHERE expires_at IS NOT NULL;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("credits", "0012_holding_consumption_order"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "scope",
                    models.CharField(
                        choices=[("recent", "Since the last checkpoint"), ("full", "All history")],
                        max_length=8,
                    ),
                ),
                ("started_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("from_entry_id", models.BigIntegerField(default=0)),
                ("to_entry_id", models.BigIntegerField(default=0)),
                ("problems", models.IntegerField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-started_at"],
            },
        ),
        migrations.CreateModel(
            name="StoredForecast",
            fields=[
                (
                    "organization",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="accounts.organization",
                    ),
                ),
                ("computed_at", models.DateTimeField()),
                ("enough_history", models.BooleanField(default=False)),
                ("daily_rate", models.FloatField(default=0)),
                ("runs_out_on", models.DateField(blank=True, null=True)),
                ("expires_unused", models.BigIntegerField(default=0)),
                ("points", models.JSONField(default=list)),
            ],
        ),
        migrations.CreateModel(
            name="DailyTotal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                (
                    "kind",
                    models.CharField(
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
                ("gained", models.BigIntegerField(default=0)),
                ("lost", models.BigIntegerField(default=0)),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="credits.account",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="accounts.organization",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["organization", "day"], name="daily_total_org_day")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("account", "day", "kind"), name="daily_total_once"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("gained__gte", 0), ("lost__lte", 0)),
                        name="daily_total_signs",
                    ),
                ],
            },
        ),
        migrations.AddIndex(
            model_name="ledgertransaction",
            index=models.Index(
                fields=["organization", "kind", "created_at"], name="ledger_txn_org_kind_time"
            ),
        ),
        migrations.RunSQL(
            DAILY_TOTALS_SQL,
            "DROP TRIGGER ledger_entry_daily_totals ON credits_ledgerentry;"
            " DROP FUNCTION credits_daily_totals();",
        ),
        migrations.RunSQL(BACKFILL_SQL, migrations.RunSQL.noop),
        migrations.RunSQL(LOT_WINDOW_SQL, "DROP INDEX lot_due_window;"),
    ]

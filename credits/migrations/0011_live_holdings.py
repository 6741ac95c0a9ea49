"""Consumption reads live holdings only.

`Holding.live` (quantity > 0, a stored generated column) and the partial index holding_live
let `credits_take` skip the emptied holdings an old organization accumulates: every lot it
ever had leaves a holding at zero per account it passed through. The function's current
definition is credits/sql/credits_take.sql; this migration installs it."""

import importlib
from pathlib import Path

from django.db import migrations, models

TAKE_SQL = (Path(__file__).resolve().parent.parent / "sql" / "credits_take.sql").read_text()


def _previous_take() -> str:
    """credits_take as migration 0003 defined it, to go back to."""
    sql = importlib.import_module("credits.migrations.0003_credits_take").SQL
    start = sql.index("CREATE FUNCTION credits_take(")
    end = sql.index("-- A whole redemption in one statement")
    return sql[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


class Migration(migrations.Migration):
    dependencies = [("credits", "0010_overage_due")]

    operations = [
        migrations.AddField(
            model_name="holding",
            name="live",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.ExpressionWrapper(
                    models.Q(("quantity__gt", 0)), output_field=models.BooleanField()
                ),
                output_field=models.BooleanField(),
            ),
        ),
        migrations.AddIndex(
            model_name="holding",
            index=models.Index(
                condition=models.Q(("live", True)), fields=["account", "lot"], name="holding_live"
            ),
        ),
        migrations.RunSQL(TAKE_SQL, _previous_take()),
    ]

"""credits_take writes the entries of a take in one INSERT after its loops, instead of one
per lot inside them: the entries' statement triggers (references, daily totals) then run once
per take, while the account is locked, rather than once per lot (a take of a thousand lots
paid a thousand trigger runs). And the daily totals' organization column loses its own index,
which daily_total_org_day already covers.

Going back keeps this credits_take: the one 0014 installed differs only in when it writes the
same entries."""

from pathlib import Path

import django.db.models.deletion
from django.db import migrations, models

TAKE_SQL = (Path(__file__).resolve().parent.parent / "sql" / "credits_take.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("credits", "0014_sql_definitions"),
    ]

    operations = [
        migrations.AlterField(
            model_name="dailytotal",
            name="organization",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        migrations.RunSQL(TAKE_SQL, migrations.RunSQL.noop),
    ]

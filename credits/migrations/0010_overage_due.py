"""OverageDue: the organizations with unbilled overage, kept by a trigger on credits_overage.

Overage rows are inserted by `credits_take` (SQL), so the row is kept in SQL too: whatever
inserts overage also marks its organization due, in the same transaction. `ON CONFLICT DO
UPDATE` (even when its WHERE is false) locks the organization's row until that transaction
commits, so the billing job's refresh, which locks the row first, always sees the overage a
concurrent transaction has just recorded, and a row the job deletes meanwhile is inserted
again."""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
CREATE FUNCTION credits_overage_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credits_overagedue (organization_id, since)
    VALUES (NEW.organization_id, NEW.created_at)
    ON CONFLICT (organization_id) DO UPDATE SET since = EXCLUDED.since
    WHERE credits_overagedue.since > EXCLUDED.since;
    RETURN NULL;
END;
$$;
CREATE TRIGGER overage_due AFTER INSERT ON credits_overage
    FOR EACH ROW EXECUTE FUNCTION credits_overage_due();
INSERT INTO credits_overagedue (organization_id, since)
SELECT organization_id, min(created_at) FROM credits_overage
WHERE billed_at IS NULL GROUP BY organization_id;
"""

BACKWARD = """
DROP TRIGGER overage_due ON credits_overage;
DROP FUNCTION credits_overage_due();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("credits", "0009_ledger_restore"),
    ]

    operations = [
        migrations.CreateModel(
            name="OverageDue",
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
                (
                    "since",
                    models.DateTimeField(
                        help_text="No unbilled overage of this organization is older."
                    ),
                ),
            ],
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]

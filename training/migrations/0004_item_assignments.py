import django.db.models.deletion
from django.db import migrations, models


def assign_existing(apps, schema_editor):
    """Plans made before seats were assigned enrolled every person in every item: keep that,
    with each confirmed person's seats confirmed when they were."""
    Participant = apps.get_model("training", "Participant")
    PlanItem = apps.get_model("training", "PlanItem")
    ItemAssignment = apps.get_model("training", "ItemAssignment")
    items_by_plan: dict[int, list[int]] = {}
    for item in PlanItem.objects.values("id", "plan_id"):
        items_by_plan.setdefault(item["plan_id"], []).append(item["id"])
    rows = []
    for person in Participant.objects.values("id", "plan_id", "confirmed_at").iterator():
        for item_id in items_by_plan.get(person["plan_id"], []):
            rows.append(
                ItemAssignment(
                    item_id=item_id,
                    participant_id=person["id"],
                    confirmed_at=person["confirmed_at"],
                )
            )
    ItemAssignment.objects.bulk_create(rows, batch_size=5000)
    # An item never has fewer seats than people.
    for item in PlanItem.objects.annotate(n=models.Count("assignments")):
        if item.n > item.seats:
            PlanItem.objects.filter(pk=item.pk).update(seats=item.n)


class Migration(migrations.Migration):
    # Also the merge of the two 0003 migrations, made side by side.
    dependencies = [
        ("training", "0003_assignment_pending_once"),
        ("training", "0003_levelchange"),
    ]

    operations = [
        migrations.CreateModel(
            name="ItemAssignment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("confirmed_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "item",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="assignments",
                        to="training.planitem",
                    ),
                ),
                (
                    "participant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="assignments",
                        to="training.participant",
                    ),
                ),
            ],
            options={
                "ordering": ["item_id", "participant_id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("item", "participant"), name="item_assignment_once"
                    )
                ],
                "indexes": [
                    models.Index(
                        condition=models.Q(("confirmed_at__isnull", True)),
                        fields=["item"],
                        name="item_assignment_pending",
                    )
                ],
            },
        ),
        migrations.RunPython(assign_existing, migrations.RunPython.noop),
    ]

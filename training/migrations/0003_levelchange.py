import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_cartline"),
        # Level changes give credits back through reversals (credits 0008).
        ("credits", "0008_reversals"),
        ("training", "0002_managers_and_assignments"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="LevelChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("from_cost", models.PositiveIntegerField()),
                ("to_cost", models.PositiveIntegerField()),
                ("credits_moved", models.IntegerField(default=0)),
                ("credits_not_returned", models.PositiveIntegerField(default=0)),
                ("reason", models.TextField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "charge",
                    models.ForeignKey(
                        blank=True,
                        help_text=(
                            "The redemption of the difference (a dearer level, credits "
                            "already charged)."
                        ),
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="credits.ledgertransaction",
                    ),
                ),
                (
                    "enrollment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="level_changes",
                        to="training.enrollment",
                    ),
                ),
                (
                    "from_level",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="catalog.level",
                    ),
                ),
                (
                    "hold",
                    models.ForeignKey(
                        blank=True,
                        help_text="The new hold of the new cost (credits still held).",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="credits.hold",
                    ),
                ),
                (
                    "released",
                    models.ForeignKey(
                        blank=True,
                        help_text="The release of the old hold (credits still held).",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="credits.ledgertransaction",
                    ),
                ),
                (
                    "reversals",
                    models.ManyToManyField(
                        blank=True, related_name="+", to="credits.ledgertransaction"
                    ),
                ),
                (
                    "staff",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "to_level",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="catalog.level",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
    ]

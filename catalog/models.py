from django.db import models


class Course(models.Model):
    """A course of the platform's catalog, shared by every organization."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    summary = models.TextField(blank=True)
    category = models.CharField(max_length=100, db_index=True)
    duration_minutes = models.PositiveIntegerField(default=60)
    published = models.BooleanField(default=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Level(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="levels")
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField(default=1)
    credit_cost = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["course", "order"]
        constraints = [
            models.UniqueConstraint(fields=["course", "order"], name="level_order_unique"),
            models.CheckConstraint(condition=models.Q(credit_cost__gte=1), name="level_cost_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.course} — {self.name}"

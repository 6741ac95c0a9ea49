from django.conf import settings
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


class CartLine(models.Model):
    """A level and a number of seats in one admin's cart, in one organization. Nothing is
    deducted until a plan is confirmed."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    level = models.ForeignKey(Level, on_delete=models.CASCADE, related_name="+")
    seats = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user", "level"], name="cart_line"),
            models.CheckConstraint(condition=models.Q(seats__gte=1), name="cart_seats_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.seats} seats of {self.level}"

    @property
    def cost(self) -> int:
        return self.seats * self.level.credit_cost

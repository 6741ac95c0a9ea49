"""Demo catalog. Idempotent."""

from django.db import transaction

from .models import Course, Level

COURSES = [
    # slug, title, category, minutes, summary, [(level, credit cost)]
    (
        "excel-essentials",
        "Excel Essentials",
        "Productivity",
        240,
        "Formulas, tables and charts for everyday work.",
        [("Beginner", 1), ("Intermediate", 1), ("Advanced", 2)],
    ),
    (
        "excel-data-analysis",
        "Data Analysis with Excel",
        "Data",
        360,
        "Pivot tables, Power Query and dashboards.",
        [("Intermediate", 2), ("Advanced", 3)],
    ),
    (
        "harassment-prevention",
        "Sexual Harassment Prevention",
        "Compliance",
        90,
        "The training every employee and supervisor needs each year.",
        [("Employee", 1), ("Supervisor", 1)],
    ),
    (
        "dot-supervisor",
        "DOT Supervisor Training",
        "Compliance",
        120,
        "Reasonable-suspicion drug and alcohol training for supervisors.",
        [("Standard", 1)],
    ),
    (
        "leadership-foundations",
        "Leadership Foundations",
        "Leadership",
        300,
        "Feedback, delegation and running one-to-ones.",
        [("New manager", 1), ("Experienced manager", 2)],
    ),
    (
        "workplace-safety",
        "Workplace Safety",
        "Compliance",
        60,
        "Hazards, reporting and first response.",
        [("Standard", 1)],
    ),
]


@transaction.atomic
def seed() -> int:
    for slug, title, category, minutes, summary, levels in COURSES:
        course, _ = Course.objects.update_or_create(
            slug=slug,
            defaults={
                "title": title,
                "category": category,
                "duration_minutes": minutes,
                "summary": summary,
                "published": True,
            },
        )
        for order, (name, cost) in enumerate(levels, start=1):
            Level.objects.update_or_create(
                course=course, order=order, defaults={"name": name, "credit_cost": cost}
            )
    return len(COURSES)

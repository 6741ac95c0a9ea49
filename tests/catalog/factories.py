import factory
from factory.django import DjangoModelFactory

from catalog.models import Course, Level


class CourseFactory(DjangoModelFactory):
    class Meta:
        model = Course

    title = factory.Sequence(lambda n: f"Course {n}")
    slug = factory.Sequence(lambda n: f"course-{n}")
    category = "Compliance"


class LevelFactory(DjangoModelFactory):
    class Meta:
        model = Level

    course = factory.SubFactory(CourseFactory)
    name = factory.Sequence(lambda n: f"Level {n}")
    order = factory.Sequence(lambda n: n + 1)
    credit_cost = 1

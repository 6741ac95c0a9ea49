from django.core.management.base import BaseCommand

from accounts import demo as accounts_demo
from accounts.demo import DEMO_PASSWORD
from billing import demo as billing_demo
from catalog import demo as catalog_demo
from credits import demo as credits_demo


class Command(BaseCommand):
    help = "Create or refresh the demo data (safe to run any number of times) and print the logins."

    def handle(self, *args, **options) -> None:
        logins = accounts_demo.seed()
        courses = catalog_demo.seed()
        packages = billing_demo.seed()
        credits_demo.seed()
        self.stdout.write(f"Demo data ready: {courses} courses, {packages} credit packages.")
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for email, what in logins:
            self.stdout.write(f"  {email:<28} {what}")

from django.core.management.base import BaseCommand, CommandError

from credits.audit import ledger_audit


class Command(BaseCommand):
    help = "Check every invariant of the credit ledger; exit 1 and list violations if any."

    def handle(self, *args, **options) -> None:
        report = ledger_audit()
        if report.ok:
            self.stdout.write(f"ledger ok: {report.accounts} accounts, {report.entries} entries")
            return
        for violation in report.violations:
            self.stderr.write(violation)
        raise CommandError(f"ledger audit failed: {len(report.violations)} violation(s)")

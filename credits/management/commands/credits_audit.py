from django.core.management.base import BaseCommand, CommandError

from credits.audit import ledger_audit
from credits.models import AuditRun


class Command(BaseCommand):
    help = (
        "Check every invariant of the credit ledger; exit 1 and list violations if any. "
        "All history by default; --recent proves only what the entries since the last "
        "checkpoint touched, as the nightly job does between its weekly full runs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--recent",
            action="store_const",
            const=AuditRun.Scope.RECENT,
            default=AuditRun.Scope.FULL,
            dest="scope",
            help="prove only the entries since the checkpoint (credits.audit.checkpoint)",
        )

    def handle(self, *args, **options) -> None:
        report = ledger_audit(scope=options["scope"])
        if report.ok:
            self.stdout.write(f"ledger ok: {report.summary}")
            return
        for violation in report.violations:
            self.stderr.write(violation)
        raise CommandError(f"ledger audit failed: {len(report.violations)} violation(s)")

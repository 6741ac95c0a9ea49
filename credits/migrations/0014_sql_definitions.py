"""The ledger's SQL functions and triggers, installed from their one definition each.

Each function, with the triggers that run it, is defined in one file of credits/sql/, named
after it, holding only CREATE OR REPLACE statements, so that installing a file again is always
safe. Earlier migrations defined them inline; those are history, and this migration installs
the files over what they left:

- credits_lot_usable (new): "a lot is usable at t", the rule every query of the ledger's SQL
  now calls instead of spelling it (credits/rules.py is its ORM twin);
- credits_take: reads no more holdings than the credits it takes (LIMIT), checks each lot
  with credits_lot_usable, and keeps its plans generic;
- every other function and trigger, unchanged, now read from its file.

A later change to a file needs a migration that installs it again (tests/credits/
test_sql_definitions.py fails while the database differs from the files). A file changed in a
way that an older migration reading it cannot run at its point in history (a column added
later, a new signature) gets that older migration an inline copy of the version it installed,
as 0011 and 0012 now keep theirs of credits_take.
"""

import importlib
from pathlib import Path

from django.db import migrations

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# Named, not globbed: a file added later (for a table a later migration creates) must not run
# here. credits_lot_usable first, for readability only: plpgsql bodies are not resolved until
# called, and it refers to nothing.
FILES = [
    "credits_lot_usable",
    "credits_ledger_append_only",
    "credits_entry_references",
    "credits_never_deleted",
    "credits_overage_due",
    "credits_holding_lot_dates",
    "credits_lot_dates_moved",
    "credits_redeem_once",
    "credits_take",
]


def _read(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


# Going back: credits_take as 0012 installed it; credits_lot_usable did not exist before; the
# other files hold what earlier migrations installed, moved here unchanged.
_PREVIOUS = {
    "credits_lot_usable": (
        "DROP FUNCTION credits_lot_usable(timestamptz, timestamptz, timestamptz, timestamptz);"
    ),
    "credits_take": importlib.import_module(
        "credits.migrations.0012_holding_consumption_order"
    ).TAKE_SQL,
}


class Migration(migrations.Migration):
    dependencies = [("credits", "0013_read_models")]

    operations = [
        migrations.RunSQL(_read(name), _PREVIOUS.get(name, migrations.RunSQL.noop))
        for name in FILES
    ]

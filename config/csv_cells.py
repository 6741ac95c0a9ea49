"""Cells for CSV files that people open in a spreadsheet."""

from typing import Any

# Excel, LibreOffice and Google Sheets read a cell starting with one of these as a formula
# (tab and carriage return because some of them strip those first). Names, references and
# memos come from users, so such a cell could run =HYPERLINK(...) or worse on whoever opens it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would take for a formula gets a leading apostrophe,
    which shows it as text. Anything else, numbers included (-5 stays a number), is as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralise_row(values: list[Any]) -> list[Any]:
    return [neutralise(value) for value in values]

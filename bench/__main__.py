"""`make bench`: every benchmark, one JSON line each. `python -m bench NAME ...` runs some."""

import sys

import django

django.setup()

from . import confirm_users, expire_lots, redeem_during_expiry, redeem_hot_org  # noqa: E402
from .support import prepare_django_database  # noqa: E402

BENCHMARKS = {
    "redeem_hot_org": redeem_hot_org.run,
    "confirm_users": confirm_users.run,
    "expire_lots": expire_lots.run,
    "redeem_during_expiry": redeem_during_expiry.run,
}


def main(names: list[str]) -> None:
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    prepare_django_database()
    for name in names or BENCHMARKS:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])

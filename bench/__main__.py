"""`make bench`: every benchmark, one JSON line each. `python -m bench NAME ...` runs some.

Two databases: the fresh one the settings name (dropped and migrated on every run), where the
benchmarks that seed their own rows run (the expiry ones above all: a million due lots of their
own, timed without anything else in the tables); and a copy of the cached big-organization
template (bench/big_org.py), for the benchmarks that compare a three-year-old big organization
with a small one."""

import sys

import django

django.setup()

from . import (  # noqa: E402
    big_org,
    confirm_throughput,
    confirm_users,
    expire_lots,
    pages_at_scale,
    redeem_during_expiry,
    redeem_hot_org,
)
from .support import prepare_django_database, use_bench_database  # noqa: E402

FRESH, BIG = "fresh", "big"

# name -> (run, database)
BENCHMARKS = {
    "redeem_hot_org": (redeem_hot_org.run, FRESH),
    "confirm_users": (confirm_users.run, FRESH),
    "expire_lots": (expire_lots.run, FRESH),
    "redeem_during_expiry": (redeem_during_expiry.run, FRESH),
    "big_org": (big_org.run, BIG),
    "pages_at_scale": (pages_at_scale.run, BIG),
    "confirm_throughput": (confirm_throughput.run, BIG),
    # Writes 100,000 redemptions into the big organization: after the others that read it.
    "redeem_hot_org_big": (redeem_hot_org.run_big, BIG),
}


def main(names: list[str]) -> None:
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    names = names or list(BENCHMARKS)
    if any(BENCHMARKS[name][1] == FRESH for name in names):
        prepare_django_database()
    for name in names:
        run, database = BENCHMARKS[name]
        if database == FRESH:
            use_bench_database()
        else:
            big_org.use_big_org_database()
        run()


if __name__ == "__main__":
    main(sys.argv[1:])

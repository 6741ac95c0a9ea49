"""Every invariant of the ledger, checked against the database in a few set-based queries.

Each check is one SQL query returning the rows that break it, with a sentence saying how. It
comes in two versions, and every run is recorded as an AuditRun:

- `full` proves all history. Its cost grows with the ledger: about 40 s for a three-year-old
  big organization's 1.2 million entries, on two busy cores. The nightly job runs it once a
  week (credits.alerts.nightly_audit); `make audit` runs it on demand.
- `recent` proves what the entries written since the checkpoint (`checkpoint_run`) touched:
  their accounts, (account, lot) pairs, lots, transactions and (account, UTC day) pairs,
  plus the holds and reversals of the ledger transactions begun since and the lots due
  since. Each query starts from the new entries or transactions (a range of a primary key)
  and reaches the rest through indexes, so a night costs about that night's entries: well
  under 2 s for a night of 2,000 entries in the same organization.

What `recent` does not see, by design: a row changed behind the services' back that nothing
since the checkpoint touched (a holding of an old lot nobody used since, a daily total of an
idle account, an idle account's `held`, a lot revoked whole by hand). The ledger's own rows
cannot change (triggers refuse UPDATE and DELETE); what can is the figures derived from them,
and the weekly full run proves those all. That is the trade-off: a nightly run in seconds,
and a fault in untouched history found within a week instead of a night.
"""

# ruff: noqa: S608 - the queries are assembled from this module's own constant fragments;
# every value (entry and transaction ids) is a query parameter.
from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from .models import AuditRun

# The new entries of a recent run: (lo, hi] of the primary key, an index range. MATERIALIZED:
# the sets derived from it below are each read once, whatever the plan does with them.
_NEW = """
new AS MATERIALIZED (
    SELECT id, transaction_id, account_id, lot_id, created_at FROM credits_ledgerentry
    WHERE id > %(lo)s AND id <= %(hi)s
)"""
_NEW_ACCOUNTS = _NEW + ", accounts AS (SELECT DISTINCT account_id FROM new)"
_NEW_PAIRS = _NEW + ", pairs AS (SELECT DISTINCT account_id, lot_id FROM new)"
_NEW_LOTS = _NEW + ", lots AS (SELECT DISTINCT lot_id FROM new)"
# The UTC days the new entries fall in, per account: the daily totals they changed.
_NEW_DAYS = (
    _NEW
    + """, days AS (
    SELECT DISTINCT account_id, (created_at AT TIME ZONE 'UTC')::date AS day FROM new
)"""
)

# The lot equation's two sides, per lot (see its check). Shared by both versions so that
# they cannot drift apart.
_GRANTED = "t.kind IN ('grant', 'adjust', 'goodwill') AND e.quantity > 0"
_REMOVED = (
    "(t.kind IN ('redeem', 'capture', 'expire', 'revoke', 'adjust') AND e.quantity < 0)"
    " OR t.kind IN ('reverse', 'restore')"
)

# The daily totals the entries of an (account, day) set add up to, grouped as
# credits/sql/daily_totals.sql groups them.
_GAINED = "COALESCE(SUM(x.quantity) FILTER (WHERE x.quantity > 0), 0)"
_LOST = "COALESCE(SUM(x.quantity) FILTER (WHERE x.quantity < 0), 0)"
_DAILY_MISMATCH = """
SELECT COALESCE(s.account_id, e.account_id), COALESCE(s.day, e.day), COALESCE(s.kind, e.kind),
       s.gained, s.lost, e.gained, e.lost
FROM stored s FULL JOIN expected e
  ON e.account_id = s.account_id AND e.day = s.day AND e.kind = s.kind
WHERE s.account_id IS NULL OR e.account_id IS NULL
   OR s.gained <> e.gained OR s.lost <> e.lost
"""


# Touched accounts whose balance differs from the sum of their daily totals (one row per day
# and kind), each with the sum of its entries, read only for those: the two checks below
# then say which side is wrong, the balance or the daily totals.
_ACCOUNTS_OFF_THEIR_DAYS = f"""
WITH {_NEW_ACCOUNTS},
summed AS (
    SELECT a.id, a.balance, d.total AS days
    FROM accounts n JOIN credits_account a ON a.id = n.account_id
    CROSS JOIN LATERAL (SELECT COALESCE(SUM(gained + lost), 0)::bigint total
                        FROM credits_dailytotal WHERE account_id = a.id) d
    WHERE a.balance <> d.total
),
off AS (
    SELECT s.id, s.balance, s.days, e.total AS entries FROM summed s
    CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) total FROM credits_ledgerentry
                        WHERE account_id = s.id) e
)"""


@dataclass(frozen=True)
class Check:
    description: str
    # Over all rows. None: a recent-only check whose ground the full run covers otherwise.
    full: str | None
    # Over what the entries in (%(lo)s, %(hi)s] and the transactions after %(txn_lo)s
    # touched; %(since)s and %(until)s are when the checkpoint run and this one began.
    recent: str


CHECKS: list[Check] = [
    Check(
        "holding's copy of its lot's dates differs from the lot",
        # credits_take reads consumption order and validity from these copies.
        full="""
        SELECT h.id, h.lot_expires_at, l.expires_at, h.lot_invoiced_at, l.invoiced_at
        FROM credits_holding h JOIN credits_lot l ON l.id = h.lot_id
        WHERE h.lot_expires_at IS DISTINCT FROM l.expires_at
           OR h.lot_invoiced_at IS DISTINCT FROM l.invoiced_at
        """,
        # Every holding of each lot used (a lot has a holding per account it reached: few).
        recent=f"""
        WITH {_NEW_LOTS}
        SELECT h.id, h.lot_expires_at, l.expires_at, h.lot_invoiced_at, l.invoiced_at
        FROM lots n
        JOIN credits_lot l ON l.id = n.lot_id
        JOIN credits_holding h ON h.lot_id = n.lot_id
        WHERE h.lot_expires_at IS DISTINCT FROM l.expires_at
           OR h.lot_invoiced_at IS DISTINCT FROM l.invoiced_at
        """,
    ),
    Check(
        "account balance differs from its entries",
        full="""
        SELECT a.id, a.balance, COALESCE(e.total, 0)
        FROM credits_account a
        LEFT JOIN (SELECT account_id, SUM(quantity) total FROM credits_ledgerentry
                   GROUP BY account_id) e ON e.account_id = a.id
        WHERE a.balance <> COALESCE(e.total, 0)
        """,
        # A pool's entries are most of the ledger: summing them nightly is the full run's
        # cost. Its daily totals are one row per day and kind (the check below proves the
        # touched days' rows against their entries). Only an account whose balance differs
        # from those is summed from its entries, to say which of the two is wrong: the
        # balance here, the daily totals in the next check.
        recent=f"""
        {_ACCOUNTS_OFF_THEIR_DAYS}
        SELECT id, balance, entries FROM off WHERE balance <> entries
        """,
    ),
    Check(
        "account's daily totals do not add up to its entries",
        # The full run proves every daily total row by row (below).
        full=None,
        # The other half of the check above: a daily total of a day the new entries did not
        # touch, found through its sum.
        recent=f"""
        {_ACCOUNTS_OFF_THEIR_DAYS}
        SELECT id, days, entries FROM off WHERE days <> entries
        """,
    ),
    Check(
        "account balance differs from its holdings",
        full="""
        SELECT a.id, a.balance, COALESCE(h.total, 0)
        FROM credits_account a
        LEFT JOIN (SELECT account_id, SUM(quantity) total FROM credits_holding
                   GROUP BY account_id) h ON h.account_id = a.id
        WHERE a.balance <> COALESCE(h.total, 0)
        """,
        # Live holdings only (the partial index holding_live_order): the others hold 0, and
        # outnumber them in an old account. The cost is the account's live lots, not its past.
        recent=f"""
        WITH {_NEW_ACCOUNTS}
        SELECT a.id, a.balance, h.total
        FROM accounts n JOIN credits_account a ON a.id = n.account_id
        CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) total FROM credits_holding
                            WHERE account_id = a.id AND live) h
        WHERE a.balance <> h.total
        """,
    ),
    Check(
        "holding differs from its entries",
        full="""
        SELECT h.id, h.quantity, COALESCE(e.total, 0)
        FROM credits_holding h
        LEFT JOIN (SELECT account_id, lot_id, SUM(quantity) total FROM credits_ledgerentry
                   GROUP BY account_id, lot_id) e
               ON e.account_id = h.account_id AND e.lot_id = h.lot_id
        WHERE h.quantity <> COALESCE(e.total, 0)
        """,
        # All entries of each pair used, found by the entries' lot_id index.
        recent=f"""
        WITH {_NEW_PAIRS}
        SELECT h.id, h.quantity, e.total
        FROM pairs p
        JOIN credits_holding h ON h.account_id = p.account_id AND h.lot_id = p.lot_id
        CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) total FROM credits_ledgerentry
                            WHERE lot_id = p.lot_id AND account_id = p.account_id) e
        WHERE h.quantity <> e.total
        """,
    ),
    Check(
        "entries for an account and lot with no holding row",
        full="""
        SELECT e.account_id, e.lot_id, SUM(e.quantity)
        FROM credits_ledgerentry e
        LEFT JOIN credits_holding h ON h.account_id = e.account_id AND h.lot_id = e.lot_id
        WHERE h.id IS NULL GROUP BY e.account_id, e.lot_id
        """,
        recent=f"""
        WITH {_NEW_PAIRS}
        SELECT p.account_id, p.lot_id,
               (SELECT SUM(quantity) FROM credits_ledgerentry
                WHERE lot_id = p.lot_id AND account_id = p.account_id)
        FROM pairs p
        LEFT JOIN credits_holding h ON h.account_id = p.account_id AND h.lot_id = p.lot_id
        WHERE h.id IS NULL
        """,
    ),
    Check(
        "account held figure differs from its active holds",
        full="""
        SELECT a.id, a.held, COALESCE(h.total, 0)
        FROM credits_account a
        LEFT JOIN (SELECT account_id, SUM(quantity) total FROM credits_hold
                   WHERE status = 'active' GROUP BY account_id) h ON h.account_id = a.id
        WHERE a.held <> COALESCE(h.total, 0)
        """,
        # `held` moves with holds, which write no entries: the accounts whose holds were
        # placed or resolved by a transaction since the checkpoint (both ids are indexed),
        # and those of the new entries for good measure.
        recent=f"""
        WITH {_NEW},
        accounts AS (
            SELECT account_id FROM credits_hold WHERE placed_by_id > %(txn_lo)s
            UNION SELECT account_id FROM credits_hold WHERE resolved_by_id > %(txn_lo)s
            UNION SELECT account_id FROM new
        )
        SELECT a.id, a.held, h.total
        FROM accounts n JOIN credits_account a ON a.id = n.account_id
        CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) total FROM credits_hold
                            WHERE account_id = a.id AND status = 'active') h
        WHERE a.held <> h.total
        """,
    ),
    Check(
        "negative quantity stored",
        full="""
        SELECT 'account', id, LEAST(balance, held) FROM credits_account
            WHERE balance < 0 OR held < 0
        UNION ALL SELECT 'holding', id, quantity FROM credits_holding WHERE quantity < 0
        UNION ALL SELECT 'lot', id, quantity FROM credits_lot WHERE quantity <= 0
        """,
        recent=f"""
        WITH {_NEW_PAIRS}
        SELECT 'account', a.id, LEAST(a.balance, a.held)
            FROM (SELECT DISTINCT account_id FROM pairs) n
            JOIN credits_account a ON a.id = n.account_id
            WHERE a.balance < 0 OR a.held < 0
        UNION ALL SELECT 'holding', h.id, h.quantity FROM pairs p
            JOIN credits_holding h ON h.account_id = p.account_id AND h.lot_id = p.lot_id
            WHERE h.quantity < 0
        UNION ALL SELECT 'lot', l.id, l.quantity FROM (SELECT DISTINCT lot_id FROM pairs) n
            JOIN credits_lot l ON l.id = n.lot_id
            WHERE l.quantity <= 0
        """,
    ),
    Check(
        "lot quantity is not what accounts hold + consumed + expired + revoked",
        # Grants add the lot's quantity once; every other kind only moves or removes it, so
        # the grant-side entries must equal the lot and the rest must equal the holdings.
        # A reversal gives consumption back: its entries (all of them: a lapsed part is a
        # +n/-n pair) count against what was removed; so does a restoration (a revocation
        # given back).
        full=f"""
        SELECT l.id, l.quantity, COALESCE(g.granted, 0), COALESCE(h.held, 0),
               COALESCE(x.removed, 0)
        FROM credits_lot l
        LEFT JOIN (SELECT e.lot_id, SUM(e.quantity) granted FROM credits_ledgerentry e
                   JOIN credits_ledgertransaction t ON t.id = e.transaction_id
                   WHERE {_GRANTED}
                   GROUP BY e.lot_id) g ON g.lot_id = l.id
        LEFT JOIN (SELECT lot_id, SUM(quantity) held FROM credits_holding GROUP BY lot_id) h
               ON h.lot_id = l.id
        LEFT JOIN (SELECT e.lot_id, -SUM(e.quantity) removed FROM credits_ledgerentry e
                   JOIN credits_ledgertransaction t ON t.id = e.transaction_id
                   WHERE {_REMOVED}
                   GROUP BY e.lot_id) x ON x.lot_id = l.id
        WHERE l.quantity <> COALESCE(g.granted, 0)
           OR l.quantity <> COALESCE(h.held, 0) + COALESCE(x.removed, 0)
        """,
        # Each lot used, with all its entries (the entries' lot_id index) and holdings.
        recent=f"""
        WITH {_NEW_LOTS}
        SELECT l.id, l.quantity, x.granted, h.held, x.removed
        FROM lots n JOIN credits_lot l ON l.id = n.lot_id
        CROSS JOIN LATERAL (
            SELECT COALESCE(SUM(e.quantity) FILTER (WHERE {_GRANTED}), 0) granted,
                   COALESCE(-SUM(e.quantity) FILTER (WHERE {_REMOVED}), 0) removed
            FROM credits_ledgerentry e
            JOIN credits_ledgertransaction t ON t.id = e.transaction_id
            WHERE e.lot_id = l.id) x
        CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) held FROM credits_holding
                            WHERE lot_id = l.id) h
        WHERE l.quantity <> x.granted OR l.quantity <> h.held + x.removed
        """,
    ),
    Check(
        "transfer does not net to zero",
        full="""
        SELECT t.id, SUM(e.quantity) FROM credits_ledgertransaction t
        JOIN credits_ledgerentry e ON e.transaction_id = t.id
        WHERE t.kind = 'transfer' GROUP BY t.id HAVING SUM(e.quantity) <> 0
        """,
        # The transactions of the new entries, with all their entries (transaction_id index).
        recent=f"""
        WITH {_NEW}
        SELECT t.id, SUM(e.quantity)
        FROM (SELECT DISTINCT transaction_id FROM new) n
        JOIN credits_ledgertransaction t ON t.id = n.transaction_id AND t.kind = 'transfer'
        JOIN credits_ledgerentry e ON e.transaction_id = t.id
        GROUP BY t.id HAVING SUM(e.quantity) <> 0
        """,
    ),
    Check(
        "reversal is not of a redemption or capture, or not into its account",
        full="""
        SELECT r.id, o.id, o.kind, r.account_id, o.account_id
        FROM credits_ledgertransaction r
        LEFT JOIN credits_ledgertransaction o ON o.id = r.reversal_of_id
        WHERE (r.kind = 'reverse' OR r.reversal_of_id IS NOT NULL)
          AND (r.kind <> 'reverse' OR o.kind NOT IN ('redeem', 'capture') OR o.id IS NULL
               OR r.account_id IS DISTINCT FROM o.account_id
               OR r.organization_id <> o.organization_id)
        """,
        # The transactions begun since the checkpoint: a primary-key range. A reversal of
        # overage alone writes no entry, so the new entries would not find it.
        recent="""
        SELECT r.id, o.id, o.kind, r.account_id, o.account_id
        FROM credits_ledgertransaction r
        LEFT JOIN credits_ledgertransaction o ON o.id = r.reversal_of_id
        WHERE r.id > %(txn_lo)s
          AND (r.kind = 'reverse' OR r.reversal_of_id IS NOT NULL)
          AND (r.kind <> 'reverse' OR o.kind NOT IN ('redeem', 'capture') OR o.id IS NULL
               OR r.account_id IS DISTINCT FROM o.account_id
               OR r.organization_id <> o.organization_id)
        """,
    ),
    Check(
        "reversals give back more than their original took",
        # In all (the requested quantities) and lot by lot (the positive entries: what came
        # back or lapsed), and no reversal moves more than it was asked for.
        full="""
        SELECT 'original', o.id, o.quantity, SUM(r.quantity)
        FROM credits_ledgertransaction o
        JOIN credits_ledgertransaction r ON r.reversal_of_id = o.id AND r.kind = 'reverse'
        GROUP BY o.id, o.quantity HAVING SUM(r.quantity) > o.quantity
        UNION ALL
        SELECT 'lot', b.original_id, b.lot_id, b.back - COALESCE(t.taken, 0)
        FROM (SELECT r.reversal_of_id original_id, e.account_id, e.lot_id,
                     SUM(e.quantity) back
              FROM credits_ledgertransaction r
              JOIN credits_ledgerentry e ON e.transaction_id = r.id
              WHERE r.kind = 'reverse' AND e.quantity > 0
              GROUP BY r.reversal_of_id, e.account_id, e.lot_id) b
        LEFT JOIN (SELECT transaction_id, account_id, lot_id, -SUM(quantity) taken
                   FROM credits_ledgerentry
                   WHERE quantity < 0 AND transaction_id IN (
                       SELECT reversal_of_id FROM credits_ledgertransaction
                       WHERE kind = 'reverse')
                   GROUP BY transaction_id, account_id, lot_id) t
               ON t.transaction_id = b.original_id AND t.account_id = b.account_id
              AND t.lot_id = b.lot_id
        WHERE b.back > COALESCE(t.taken, 0)
        UNION ALL
        SELECT 'reversal', r.id, r.quantity, SUM(e.quantity)
        FROM credits_ledgertransaction r
        JOIN credits_ledgerentry e ON e.transaction_id = r.id
        WHERE r.kind = 'reverse' AND e.quantity > 0
        GROUP BY r.id, r.quantity HAVING SUM(e.quantity) > r.quantity
        """,
        # The originals of the reversals begun since the checkpoint, with every reversal of
        # each (reversal_of_id index), old ones included: the sums are over all of them.
        recent="""
        WITH originals AS (
            SELECT DISTINCT reversal_of_id id FROM credits_ledgertransaction
            WHERE id > %(txn_lo)s AND kind = 'reverse'
        ), reversals AS (
            SELECT r.id, r.reversal_of_id, r.quantity FROM originals n
            JOIN credits_ledgertransaction r ON r.reversal_of_id = n.id AND r.kind = 'reverse'
        )
        SELECT 'original', o.id, o.quantity, SUM(r.quantity)
        FROM reversals r JOIN credits_ledgertransaction o ON o.id = r.reversal_of_id
        GROUP BY o.id, o.quantity HAVING SUM(r.quantity) > o.quantity
        UNION ALL
        SELECT 'lot', b.original_id, b.lot_id, b.back - COALESCE(t.taken, 0)
        FROM (SELECT r.reversal_of_id original_id, e.account_id, e.lot_id,
                     SUM(e.quantity) back
              FROM reversals r JOIN credits_ledgerentry e ON e.transaction_id = r.id
              WHERE e.quantity > 0
              GROUP BY r.reversal_of_id, e.account_id, e.lot_id) b
        LEFT JOIN (SELECT e.transaction_id, e.account_id, e.lot_id, -SUM(e.quantity) taken
                   FROM originals n JOIN credits_ledgerentry e ON e.transaction_id = n.id
                   WHERE e.quantity < 0
                   GROUP BY e.transaction_id, e.account_id, e.lot_id) t
               ON t.transaction_id = b.original_id AND t.account_id = b.account_id
              AND t.lot_id = b.lot_id
        WHERE b.back > COALESCE(t.taken, 0)
        UNION ALL
        SELECT 'reversal', r.id, r.quantity, SUM(e.quantity)
        FROM credits_ledgertransaction r
        JOIN credits_ledgerentry e ON e.transaction_id = r.id
        WHERE r.id > %(txn_lo)s AND r.kind = 'reverse' AND e.quantity > 0
        GROUP BY r.id, r.quantity HAVING SUM(e.quantity) > r.quantity
        """,
    ),
    Check(
        "reversal takes credits from a lot",
        # A reversal only gives back; a lapsed part is a +n/-n pair that nets to zero.
        full="""
        SELECT e.transaction_id, e.lot_id, SUM(e.quantity)
        FROM credits_ledgerentry e
        JOIN credits_ledgertransaction t ON t.id = e.transaction_id
        WHERE t.kind = 'reverse'
        GROUP BY e.transaction_id, e.lot_id HAVING SUM(e.quantity) < 0
        """,
        recent="""
        SELECT e.transaction_id, e.lot_id, SUM(e.quantity)
        FROM credits_ledgertransaction t
        JOIN credits_ledgerentry e ON e.transaction_id = t.id
        WHERE t.id > %(txn_lo)s AND t.kind = 'reverse'
        GROUP BY e.transaction_id, e.lot_id HAVING SUM(e.quantity) < 0
        """,
    ),
    Check(
        "restoration gives back more than its revocation took, or takes credits",
        # lot_restore's key is `restore:<revocation id>`, one per revocation; per account and
        # lot it gives back at most what that revocation's entries took, and never takes.
        full="""
        SELECT r.id, e.account_id, e.lot_id, SUM(e.quantity), COALESCE(MAX(v.taken), 0)
        FROM credits_ledgertransaction r
        JOIN credits_ledgerentry e ON e.transaction_id = r.id
        LEFT JOIN (SELECT t.id, t.organization_id, x.account_id, x.lot_id,
                          -SUM(x.quantity) taken
                   FROM credits_ledgertransaction t
                   JOIN credits_ledgerentry x ON x.transaction_id = t.id
                   WHERE t.kind = 'revoke'
                   GROUP BY t.id, t.organization_id, x.account_id, x.lot_id) v
               ON r.idempotency_key = 'restore:' || v.id
              AND v.organization_id = r.organization_id
              AND v.account_id = e.account_id AND v.lot_id = e.lot_id
        WHERE r.kind = 'restore'
        GROUP BY r.id, e.account_id, e.lot_id
        HAVING SUM(e.quantity) < 0 OR SUM(e.quantity) > COALESCE(MAX(v.taken), 0)
        """,
        # The restorations begun since the checkpoint, and the revocations their keys name
        # (read by primary key; a key that names none matches nothing, as above).
        recent="""
        WITH restores AS (
            SELECT id, organization_id, idempotency_key FROM credits_ledgertransaction
            WHERE id > %(txn_lo)s AND kind = 'restore'
        )
        SELECT r.id, e.account_id, e.lot_id, SUM(e.quantity), COALESCE(MAX(v.taken), 0)
        FROM restores r
        JOIN credits_ledgerentry e ON e.transaction_id = r.id
        LEFT JOIN (SELECT t.id, t.organization_id, x.account_id, x.lot_id,
                          -SUM(x.quantity) taken
                   FROM credits_ledgertransaction t
                   JOIN credits_ledgerentry x ON x.transaction_id = t.id
                   WHERE t.kind = 'revoke' AND t.id IN (
                       SELECT substring(idempotency_key FROM '^restore:([0-9]{1,18})$')::bigint
                       FROM restores)
                   GROUP BY t.id, t.organization_id, x.account_id, x.lot_id) v
               ON r.idempotency_key = 'restore:' || v.id
              AND v.organization_id = r.organization_id
              AND v.account_id = e.account_id AND v.lot_id = e.lot_id
        GROUP BY r.id, e.account_id, e.lot_id
        HAVING SUM(e.quantity) < 0 OR SUM(e.quantity) > COALESCE(MAX(v.taken), 0)
        """,
    ),
    Check(
        "expired or revoked lot still held",
        full="""
        SELECT h.lot_id, h.account_id, h.quantity FROM credits_holding h
        JOIN credits_lot l ON l.id = h.lot_id
        WHERE h.quantity > 0 AND (l.expired_at IS NOT NULL OR l.revoked_at IS NOT NULL)
        """,
        # The holdings of the lots used, and of every lot due or marked expired since the
        # checkpoint run began: those whose window [expires_at, expired_at] (open while not
        # marked) meets that interval, found by the GiST index lot_due_window, whose
        # expression this repeats word for word (migration 0013). A lot marked expired whose
        # expiry wrote no entry, the very fault this looks for, is among no lots used.
        # A whole revocation that wrote no entry is left to the full run: revoked_at has no
        # index, and its lot is named by nothing else.
        recent=f"""
        WITH {_NEW_LOTS},
        suspects AS (
            SELECT lot_id FROM lots
            UNION
            SELECT id FROM credits_lot
            WHERE expires_at IS NOT NULL
              AND tstzrange(expires_at, CASE WHEN expired_at IS NOT NULL
                                             THEN greatest(expired_at, expires_at) END, '[]')
                  && tstzrange(%(since)s, %(until)s, '[]')
        )
        SELECT h.lot_id, h.account_id, h.quantity FROM credits_lot l
        JOIN credits_holding h ON h.lot_id = l.id
        -- An array, not a join: joined, the planner hashes every expired lot ever to
        -- match the few suspects; = ANY reads each by primary key.
        WHERE l.id = ANY(ARRAY(SELECT lot_id FROM suspects))
          AND h.live AND (l.expired_at IS NOT NULL OR l.revoked_at IS NOT NULL)
        """,
    ),
    Check(
        "hold status disagrees with the transaction that resolved it",
        full="""
        SELECT h.id, h.status, t.kind FROM credits_hold h
        LEFT JOIN credits_ledgertransaction t ON t.id = h.resolved_by_id
        WHERE (h.status = 'active' AND h.resolved_by_id IS NOT NULL)
           OR (h.status = 'captured' AND t.kind IS DISTINCT FROM 'capture')
           OR (h.status = 'released' AND t.kind IS DISTINCT FROM 'release')
        """,
        # Holds placed or resolved since the checkpoint (both ids indexed).
        recent="""
        SELECT h.id, h.status, t.kind FROM credits_hold h
        LEFT JOIN credits_ledgertransaction t ON t.id = h.resolved_by_id
        WHERE (h.placed_by_id > %(txn_lo)s OR h.resolved_by_id > %(txn_lo)s)
          AND ((h.status = 'active' AND h.resolved_by_id IS NOT NULL)
               OR (h.status = 'captured' AND t.kind IS DISTINCT FROM 'capture')
               OR (h.status = 'released' AND t.kind IS DISTINCT FROM 'release'))
        """,
    ),
    Check(
        "entry belongs to another organization than its transaction",
        full="""
        SELECT e.id, t.organization_id, a.organization_id FROM credits_ledgerentry e
        JOIN credits_ledgertransaction t ON t.id = e.transaction_id
        JOIN credits_account a ON a.id = e.account_id
        JOIN credits_lot l ON l.id = e.lot_id
        WHERE t.organization_id <> a.organization_id OR l.organization_id <> a.organization_id
        """,
        recent=f"""
        WITH {_NEW}
        SELECT e.id, t.organization_id, a.organization_id FROM new e
        JOIN credits_ledgertransaction t ON t.id = e.transaction_id
        JOIN credits_account a ON a.id = e.account_id
        JOIN credits_lot l ON l.id = e.lot_id
        WHERE t.organization_id <> a.organization_id OR l.organization_id <> a.organization_id
        """,
    ),
    Check(
        "daily total differs from its entries",
        # Both ways: a row with no entries, entries with no row, and a wrong sum. Each row is
        # (account, UTC day, kind, stored gained, stored lost, gained, lost by the entries).
        full=f"""
        WITH stored AS (
            SELECT account_id, day, kind, gained, lost FROM credits_dailytotal
        ), expected AS (
            SELECT x.account_id, (x.created_at AT TIME ZONE 'UTC')::date AS day, t.kind,
                   {_GAINED} gained, {_LOST} lost
            FROM credits_ledgerentry x
            JOIN credits_ledgertransaction t ON t.id = x.transaction_id
            GROUP BY 1, 2, 3
        )
        {_DAILY_MISMATCH}
        """,
        # The (account, UTC day) pairs of the new entries: their rows (daily_total_once) and
        # all that day's entries of the account (ledger_entry_acct_time), however old some.
        recent=f"""
        WITH {_NEW_DAYS},
        stored AS (
            SELECT s.account_id, s.day, s.kind, s.gained, s.lost FROM days d
            JOIN credits_dailytotal s ON s.account_id = d.account_id AND s.day = d.day
        ), expected AS (
            SELECT d.account_id, d.day, t.kind, {_GAINED} gained, {_LOST} lost
            FROM days d
            JOIN credits_ledgerentry x ON x.account_id = d.account_id
             AND x.created_at >= d.day::timestamp AT TIME ZONE 'UTC'
             AND x.created_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
            JOIN credits_ledgertransaction t ON t.id = x.transaction_id
            GROUP BY 1, 2, 3
        )
        {_DAILY_MISMATCH}
        """,
    ),
    Check(
        "daily total belongs to another organization than its account",
        full="""
        SELECT s.id, s.account_id, s.organization_id, a.organization_id
        FROM credits_dailytotal s LEFT JOIN credits_account a ON a.id = s.account_id
        WHERE a.id IS NULL OR s.organization_id <> a.organization_id
        """,
        recent=f"""
        WITH {_NEW_DAYS}
        SELECT s.id, s.account_id, s.organization_id, a.organization_id
        FROM days d
        JOIN credits_dailytotal s ON s.account_id = d.account_id AND s.day = d.day
        LEFT JOIN credits_account a ON a.id = s.account_id
        WHERE a.id IS NULL OR s.organization_id <> a.organization_id
        """,
    ),
]


@dataclass(frozen=True)
class AuditReport:
    accounts: int
    entries: int
    violations: list[str]
    scope: str = AuditRun.Scope.FULL
    # Entries with from_entry_id < id <= to_entry_id were proved.
    from_entry_id: int = 0
    to_entry_id: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def summary(self) -> str:
        if self.scope == AuditRun.Scope.FULL:
            return f"{self.accounts} accounts, {self.entries} entries"
        return (
            f"{self.accounts} accounts, {self.entries} entries "
            f"(recent: entries {self.from_entry_id + 1} to {self.to_entry_id})"
        )


def checkpoint_run() -> AuditRun | None:
    """The run a recent run proves from: the last good run before the last good one (None:
    none yet, or only one). It proves the entries after that run's `to_entry_id`.

    Why not the last good run itself: entry ids are drawn when a row is inserted, in order,
    but rows become visible when their transaction commits, in another order. A run that
    read max(id) = N may not have seen an entry N - 3 whose transaction was still open; a
    next run starting after N would never prove it. One run of overlap covers it as long as
    no ledger transaction stays open for a whole interval between runs (a day; they take
    milliseconds), at the cost of proving one night's entries twice. Runs that found
    problems are no checkpoint: the next run proves their entries again, so a problem keeps
    being reported until it is put right; nor are runs that never finished."""
    good = AuditRun.objects.filter(finished_at__isnull=False, problems=0).order_by(
        "-started_at", "-id"
    )
    return next(iter(good[1:2]), None)


def checkpoint() -> int:
    """The entry id a recent run proves from (0: from the start)."""
    run = checkpoint_run()
    return run.to_entry_id if run is not None else 0


def _transaction_checkpoint(cursor, entry_id: int) -> int:
    """The ledger transaction of the checkpoint's entry: transactions begun after it have
    greater ids (a transaction's row is written before its entries, from one sequence).
    Holds, releases and overage-only reversals write no entry; the checks that read them
    start from this id instead, with the same overlap argument as `checkpoint`."""
    cursor.execute(
        "SELECT transaction_id FROM credits_ledgerentry WHERE id <= %s ORDER BY id DESC LIMIT 1",
        [entry_id],
    )
    row = cursor.fetchone()
    return row[0] if row else 0


def ledger_audit(*, scope: str = AuditRun.Scope.FULL, limit_per_check: int = 20) -> AuditReport:
    """Run every check (each reports at most `limit_per_check` rows), recorded as an
    AuditRun. `scope="recent"` proves what the entries since `checkpoint_run()` touched; with
    no checkpoint yet it proves everything, as a full run (and is recorded as one)."""
    if scope not in AuditRun.Scope.values:
        raise ValueError(f"unknown audit scope {scope!r}")
    since = checkpoint_run() if scope == AuditRun.Scope.RECENT else None
    lo = since.to_entry_id if since is not None else 0
    if lo == 0:
        scope = AuditRun.Scope.FULL
    with connection.cursor() as cursor:
        # Read before the checks: an entry committed meanwhile is proved by the next run.
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM credits_ledgerentry")
        (hi,) = cursor.fetchone()
        run = AuditRun.objects.create(
            scope=scope, started_at=timezone.now(), from_entry_id=lo, to_entry_id=hi
        )
        params = {
            "lo": lo,
            "hi": hi,
            "txn_lo": _transaction_checkpoint(cursor, lo),
            "since": since.started_at if since is not None else run.started_at,
            "until": run.started_at,
        }
        violations: list[str] = []
        if scope == AuditRun.Scope.FULL:
            for check in CHECKS:
                if check.full is not None:
                    cursor.execute(f"{check.full} LIMIT {int(limit_per_check)}")
                    violations.extend(f"{check.description}: {r}" for r in cursor.fetchall())
        else:
            with transaction.atomic():
                # The recent plans are index lookups of a few rows each, but the planner
                # prices a pool's entries at a million rows and would JIT-compile them:
                # about 1.5 s of compiling for 20 ms of work.
                cursor.execute("SET LOCAL jit = off")
                for check in CHECKS:
                    cursor.execute(f"{check.recent} LIMIT {int(limit_per_check)}", params)
                    violations.extend(f"{check.description}: {r}" for r in cursor.fetchall())
        if scope == AuditRun.Scope.FULL:
            cursor.execute(
                "SELECT (SELECT COUNT(*) FROM credits_account), "
                "(SELECT COUNT(*) FROM credits_ledgerentry WHERE id <= %s)",
                [hi],
            )
        else:
            cursor.execute(
                "SELECT COUNT(DISTINCT account_id), COUNT(*) FROM credits_ledgerentry "
                "WHERE id > %s AND id <= %s",
                [lo, hi],
            )
        accounts, entries = cursor.fetchone()
    run.finished_at, run.problems = timezone.now(), len(violations)
    run.save(update_fields=["finished_at", "problems"])
    return AuditReport(
        accounts=accounts,
        entries=entries,
        violations=violations,
        scope=scope,
        from_entry_id=lo,
        to_entry_id=hi,
    )

"""Every invariant of the ledger, checked against the database in a few set-based queries.

Each check is one SQL query returning the rows that break it, with a sentence saying how.
"""

from dataclasses import dataclass

from django.db import connection

CHECKS: list[tuple[str, str]] = [
    (
        "holding's copy of its lot's dates differs from the lot",
        # credits_take reads consumption order and validity from these copies.
        """
        SELECT h.id, h.lot_expires_at, l.expires_at, h.lot_invoiced_at, l.invoiced_at
        FROM credits_holding h JOIN credits_lot l ON l.id = h.lot_id
        WHERE h.lot_expires_at IS DISTINCT FROM l.expires_at
           OR h.lot_invoiced_at IS DISTINCT FROM l.invoiced_at
        """,
    ),
    (
        "account balance differs from its entries",
        """
        SELECT a.id, a.balance, COALESCE(e.total, 0)
        FROM credits_account a
        LEFT JOIN (SELECT account_id, SUM(quantity) total FROM credits_ledgerentry
                   GROUP BY account_id) e ON e.account_id = a.id
        WHERE a.balance <> COALESCE(e.total, 0)
        """,
    ),
    (
        "account balance differs from its holdings",
        """
        SELECT a.id, a.balance, COALESCE(h.total, 0)
        FROM credits_account a
        LEFT JOIN (SELECT account_id, SUM(quantity) total FROM credits_holding
                   GROUP BY account_id) h ON h.account_id = a.id
        WHERE a.balance <> COALESCE(h.total, 0)
        """,
    ),
    (
        "holding differs from its entries",
        """
        SELECT h.id, h.quantity, COALESCE(e.total, 0)
        FROM credits_holding h
        LEFT JOIN (SELECT account_id, lot_id, SUM(quantity) total FROM credits_ledgerentry
                   GROUP BY account_id, lot_id) e
               ON e.account_id = h.account_id AND e.lot_id = h.lot_id
        WHERE h.quantity <> COALESCE(e.total, 0)
        """,
    ),
    (
        "entries for an account and lot with no holding row",
        """
        SELECT e.account_id, e.lot_id, SUM(e.quantity)
        FROM credits_ledgerentry e
        LEFT JOIN credits_holding h ON h.account_id = e.account_id AND h.lot_id = e.lot_id
        WHERE h.id IS NULL GROUP BY e.account_id, e.lot_id
        """,
    ),
    (
        "account held figure differs from its active holds",
        """
        SELECT a.id, a.held, COALESCE(h.total, 0)
        FROM credits_account a
        LEFT JOIN (SELECT account_id, SUM(quantity) total FROM credits_hold
                   WHERE status = 'active' GROUP BY account_id) h ON h.account_id = a.id
        WHERE a.held <> COALESCE(h.total, 0)
        """,
    ),
    (
        "negative quantity stored",
        """
        SELECT 'account', id, LEAST(balance, held) FROM credits_account
            WHERE balance < 0 OR held < 0
        UNION ALL SELECT 'holding', id, quantity FROM credits_holding WHERE quantity < 0
        UNION ALL SELECT 'lot', id, quantity FROM credits_lot WHERE quantity <= 0
        """,
    ),
    (
        "lot quantity is not what accounts hold + consumed + expired + revoked",
        # Grants add the lot's quantity once; every other kind only moves or removes it, so
        # the grant-side entries must equal the lot and the rest must equal the holdings.
        # A reversal gives consumption back: its entries (all of them: a lapsed part is a
        # +n/-n pair) count against what was removed; so does a restoration (a revocation
        # given back).
        """
        SELECT l.id, l.quantity, COALESCE(g.granted, 0), COALESCE(h.held, 0),
               COALESCE(x.removed, 0)
        FROM credits_lot l
        LEFT JOIN (SELECT e.lot_id, SUM(e.quantity) granted FROM credits_ledgerentry e
                   JOIN credits_ledgertransaction t ON t.id = e.transaction_id
                   WHERE t.kind IN ('grant', 'adjust') AND e.quantity > 0
                   GROUP BY e.lot_id) g ON g.lot_id = l.id
        LEFT JOIN (SELECT lot_id, SUM(quantity) held FROM credits_holding GROUP BY lot_id) h
               ON h.lot_id = l.id
        LEFT JOIN (SELECT e.lot_id, -SUM(e.quantity) removed FROM credits_ledgerentry e
                   JOIN credits_ledgertransaction t ON t.id = e.transaction_id
                   WHERE (t.kind IN ('redeem', 'capture', 'expire', 'revoke', 'adjust')
                          AND e.quantity < 0)
                      OR t.kind IN ('reverse', 'restore')
                   GROUP BY e.lot_id) x ON x.lot_id = l.id
        WHERE l.quantity <> COALESCE(g.granted, 0)
           OR l.quantity <> COALESCE(h.held, 0) + COALESCE(x.removed, 0)
        """,
    ),
    (
        "transfer does not net to zero",
        """
        SELECT t.id, SUM(e.quantity) FROM credits_ledgertransaction t
        JOIN credits_ledgerentry e ON e.transaction_id = t.id
        WHERE t.kind = 'transfer' GROUP BY t.id HAVING SUM(e.quantity) <> 0
        """,
    ),
    (
        "reversal is not of a redemption or capture, or not into its account",
        """
        SELECT r.id, o.id, o.kind, r.account_id, o.account_id
        FROM credits_ledgertransaction r
        LEFT JOIN credits_ledgertransaction o ON o.id = r.reversal_of_id
        WHERE (r.kind = 'reverse' OR r.reversal_of_id IS NOT NULL)
          AND (r.kind <> 'reverse' OR o.kind NOT IN ('redeem', 'capture') OR o.id IS NULL
               OR r.account_id IS DISTINCT FROM o.account_id
               OR r.organization_id <> o.organization_id)
        """,
    ),
    (
        "reversals give back more than their original took",
        # In all (the requested quantities) and lot by lot (the positive entries: what came
        # back or lapsed), and no reversal moves more than it was asked for.
        """
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
    ),
    (
        "reversal takes credits from a lot",
        # A reversal only gives back; a lapsed part is a +n/-n pair that nets to zero.
        """
        SELECT e.transaction_id, e.lot_id, SUM(e.quantity)
        FROM credits_ledgerentry e
        JOIN credits_ledgertransaction t ON t.id = e.transaction_id
        WHERE t.kind = 'reverse'
        GROUP BY e.transaction_id, e.lot_id HAVING SUM(e.quantity) < 0
        """,
    ),
    (
        "restoration gives back more than its revocation took, or takes credits",
        # lot_restore's key is `restore:<revocation id>`, one per revocation; per account and
        # lot it gives back at most what that revocation's entries took, and never takes.
        """
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
    ),
    (
        "expired or revoked lot still held",
        """
        SELECT h.lot_id, h.account_id, h.quantity FROM credits_holding h
        JOIN credits_lot l ON l.id = h.lot_id
        WHERE h.quantity > 0 AND (l.expired_at IS NOT NULL OR l.revoked_at IS NOT NULL)
        """,
    ),
    (
        "hold status disagrees with the transaction that resolved it",
        """
        SELECT h.id, h.status, t.kind FROM credits_hold h
        LEFT JOIN credits_ledgertransaction t ON t.id = h.resolved_by_id
        WHERE (h.status = 'active' AND h.resolved_by_id IS NOT NULL)
           OR (h.status = 'captured' AND t.kind IS DISTINCT FROM 'capture')
           OR (h.status = 'released' AND t.kind IS DISTINCT FROM 'release')
        """,
    ),
    (
        "entry belongs to another organization than its transaction",
        """
        SELECT e.id, t.organization_id, a.organization_id FROM credits_ledgerentry e
        JOIN credits_ledgertransaction t ON t.id = e.transaction_id
        JOIN credits_account a ON a.id = e.account_id
        JOIN credits_lot l ON l.id = e.lot_id
        WHERE t.organization_id <> a.organization_id OR l.organization_id <> a.organization_id
        """,
    ),
]


@dataclass(frozen=True)
class AuditReport:
    accounts: int
    entries: int
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


def ledger_audit(*, limit_per_check: int = 20) -> AuditReport:
    violations: list[str] = []
    with connection.cursor() as cursor:
        for description, sql in CHECKS:
            cursor.execute(f"{sql} LIMIT {int(limit_per_check)}")
            violations.extend(f"{description}: {row}" for row in cursor.fetchall())
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM credits_account), "
            "(SELECT COUNT(*) FROM credits_ledgerentry)"
        )
        accounts, entries = cursor.fetchone()
    return AuditReport(accounts=accounts, entries=entries, violations=violations)

"""Every invariant of the ledger, checked against the database in a few set-based queries.

Each check is one SQL query returning the rows that break it, with a sentence saying how.
"""

from dataclasses import dataclass

from django.db import connection

CHECKS: list[tuple[str, str]] = [
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
                   WHERE t.kind IN ('redeem', 'capture', 'expire', 'revoke', 'adjust')
                     AND e.quantity < 0
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

"""The credit ledger's public API: the only code that writes lots, accounts, holdings, holds,
ledger transactions, entries and overage.

Rules every function here keeps:
- One database transaction per call: lock, check, write, or change nothing at all. The one
  exception is `lots_expire`, which may cover a million lots: one short transaction per batch.
- Locks are taken in one fixed order, so concurrent calls queue instead of deadlocking:
  the idempotency row first, then accounts by ascending id, then the hold.
- Every write carries an idempotency key, unique per organization. Replaying a key with the
  same parameters returns the first result and changes nothing; with other parameters it
  raises IdempotencyConflict. A call that failed left no row, so its key can be retried.
- Credits are consumed in `rules.CONSUMPTION_ORDER` (earliest-expiring lot first,
  never-expiring last, then oldest); a reversal gives them back into the same lots in the
  opposite order. "Usable at t" is `rules.lot_usable` here and `credits_lot_usable` in SQL.
- Times come from `django.utils.timezone.now()` (never the database clock), so the whole
  ledger follows one clock, which tests control.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, connection, transaction
from django.db.models import F, Min
from django.utils import timezone

from accounts.models import Organization, User
from catalog.models import Course
from config.errors import Refusal

from . import rules, signals, validity
from .models import (
    Account,
    Hold,
    LedgerEntry,
    LedgerTransaction,
    Lot,
    Overage,
    OverageDue,
)

Kind = LedgerTransaction.Kind

log = logging.getLogger(__name__)


# --- Domain exceptions ---------------------------------------------------------------------


class CreditsError(Refusal):
    """Base of every refusal of the ledger; the message is fit to show to a user."""


class InsufficientCredits(CreditsError):
    def __init__(self, *, shortfall: int, available: int):
        self.shortfall = shortfall
        self.available = available
        super().__init__(f"Not enough credits: {available:,} available, {shortfall:,} more needed.")


class IdempotencyConflict(CreditsError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(
            f"The request {key!r} was already made with different details; nothing was changed."
        )


class HoldNotActive(CreditsError):
    def __init__(self, hold: Hold):
        self.hold = hold
        super().__init__(f"These credits were already {hold.get_status_display().lower()}.")


class InvalidOperation(CreditsError):
    pass


class ReversalTooLarge(InvalidOperation):
    def __init__(self, *, requested: int, reversible: int):
        self.requested = requested
        self.reversible = reversible
        super().__init__(
            f"Only {reversible} of these credits can still be given back, not {requested}; "
            "nothing was changed."
        )


# --- Accounts ------------------------------------------------------------------------------


def pool_account(*, organization: Organization) -> Account:
    return _account(organization=organization, kind=Account.Kind.POOL)


def course_account(*, organization: Organization, course: Course) -> Account:
    return _account(organization=organization, kind=Account.Kind.COURSE, course=course)


def manager_account(*, organization: Organization, course: Course, manager: User) -> Account:
    return _account(
        organization=organization, kind=Account.Kind.MANAGER, course=course, manager=manager
    )


def _account(*, organization: Organization, kind: str, **scope) -> Account:
    lookup = {"organization": organization, "kind": kind, **scope}
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        # A savepoint, so that losing the race to another request does not break the
        # caller's transaction; the winner's row is then read back.
        with transaction.atomic():
            return Account.objects.create(**lookup)
    except IntegrityError:
        return Account.objects.get(**lookup)


# --- Grants --------------------------------------------------------------------------------

# What a subscription period's lot outlasts its period by: Stripe finalizes and charges the
# renewal invoice about an hour after the period ends, and its `invoice.paid` may take a while
# to arrive. Callers add it to the period's end for `expires_not_before`.
RENEWAL_GRACE = dt.timedelta(days=1)


def lot_grant(
    *,
    organization: Organization,
    quantity: int,
    source: str,
    invoice_date: dt.datetime | dt.date,
    reference: str,
    idempotency_key: str,
    expires_at: dt.datetime | None = None,
    expires_not_before: dt.datetime | None = None,
    actor: User | None = None,
) -> Lot:
    """A new lot credited to the organization's pool. Its expiry is `expires_at` if given,
    else the end of the local day `lot_validity_days` after the invoice date (or never; see
    credits/validity.py).

    `expires_not_before` (a subscription period's end plus `RENEWAL_GRACE`) keeps an expiring
    lot usable at least through the end of the local day it falls on, so a period's credits
    outlast the next period's grant however long the period was."""
    return _grant(
        organization=organization,
        quantity=quantity,
        source=source,
        invoice_date=invoice_date,
        reference=reference,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        expires_not_before=expires_not_before,
        actor=actor,
    )


def goodwill_grant(
    *,
    organization: Organization,
    quantity: int,
    reason: str,
    actor: User,
    idempotency_key: str,
    now: dt.datetime | None = None,
) -> Lot:
    """Support's goodwill credits: a lot of their own in the pool (source goodwill, paid for
    by nobody), valid for the organization's usual validity from today, written as a
    transaction of kind goodwill whose memo is the reason."""
    reason = reason.strip()
    if not reason:
        raise InvalidOperation("Say why these goodwill credits are given.")
    _require_support(actor)
    return _grant(
        organization=organization,
        quantity=quantity,
        source=Lot.Source.GOODWILL,
        invoice_date=now or timezone.now(),
        reference="",
        idempotency_key=idempotency_key,
        actor=actor,
        kind=Kind.GOODWILL,
        memo=reason,
    )


def _grant(
    *,
    organization: Organization,
    quantity: int,
    source: str,
    invoice_date: dt.datetime | dt.date,
    reference: str,
    idempotency_key: str,
    expires_at: dt.datetime | None = None,
    expires_not_before: dt.datetime | None = None,
    actor: User | None = None,
    kind: str = Kind.GRANT,
    memo: str = "",
) -> Lot:
    _require_positive(quantity)
    if source not in Lot.Source.values:
        raise InvalidOperation(f"Unknown lot source {source!r}.")
    if expires_not_before is not None and timezone.is_naive(expires_not_before):
        raise InvalidOperation("Expiry floors must carry a time zone.")
    invoiced_at = _as_datetime(invoice_date, organization)
    pool = pool_account(organization=organization)
    params = {
        "quantity": quantity,
        "source": source,
        "invoiced_at": invoiced_at,
        "reference": reference,
        "expires_at": expires_at,
    }
    if expires_not_before is not None:
        # Only when given: the fingerprints of every other grant stay what they were.
        params["expires_not_before"] = expires_not_before
    if memo:
        params["memo"] = memo
    if kind == Kind.GOODWILL:
        # Dated when given: the same form retried a moment later is the same grant.
        del params["invoiced_at"]
    with transaction.atomic():
        txn, created = _begin(
            organization=organization,
            kind=kind,
            key=idempotency_key,
            params=params,
            account=pool,
            quantity=quantity,
            reference=reference,
            memo=memo,
            actor=actor,
        )
        if not created:
            return Lot.objects.get(entries__transaction=txn)
        _lock_accounts([pool.pk])
        return _create_lot(
            txn,
            account=pool,
            quantity=quantity,
            source=source,
            invoiced_at=invoiced_at,
            expires_at=expires_at,
            expires_not_before=expires_not_before,
            reference=reference,
        )


# --- Redemption ----------------------------------------------------------------------------


def credits_redeem(
    *,
    account: Account,
    quantity: int,
    reference: str,
    idempotency_key: str,
    actor: User | None = None,
    allow_overage: bool = False,
) -> LedgerTransaction:
    """Deduct `quantity` from the account's available credits (balance less holds).

    Short: raises InsufficientCredits and changes nothing, unless `allow_overage`, which
    deducts what is available and records the rest as overage to be billed.
    """
    _require_positive(quantity)
    _require_key(idempotency_key)
    fingerprint = _fingerprint(
        Kind.REDEEM,
        {"account": account.pk, "quantity": quantity, "allow_overage": allow_overage},
    )
    now = timezone.now()
    actor_id = actor.pk if actor is not None else None
    # The hot path is one statement (credits/sql/credits_redeem_once.sql): outside a
    # transaction it is its own transaction, with no BEGIN/COMMIT round trips; inside one, a
    # savepoint undoes it alone when it is refused.
    scope = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with _refusals(), scope, connection.cursor() as cursor:
        cursor.execute(
            "SELECT transaction_id, replayed, conflict "
            "FROM credits_redeem_once(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                account.organization_id,
                idempotency_key,
                fingerprint,
                account.pk,
                quantity,
                reference,
                actor_id,
                now,
                allow_overage,
            ],
        )
        transaction_id, replayed, conflict = cursor.fetchone()
    if conflict:
        raise IdempotencyConflict(idempotency_key)
    if replayed:
        return LedgerTransaction.objects.get(pk=transaction_id)
    _available_lowered(account.organization_id)
    return _transaction_instance(
        id=transaction_id,
        organization_id=account.organization_id,
        kind=Kind.REDEEM,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        account_id=account.pk,
        quantity=quantity,
        reference=reference,
        memo="",
        actor_id=actor_id,
        created_at=now,
    )


def _take(
    txn: LedgerTransaction,
    account_id: int,
    quantity: int,
    *,
    allow_overage: bool,
    reserved: int = 0,
    release_held: int = 0,
) -> list[_Moved]:
    """Consume up to `quantity` of the account's available credits, earliest-expiring lot
    first, in the database function `credits_take` (credits/sql/credits_take.sql): it locks
    the account, debits the lots, writes the entries, the account's figures and any overage in
    one round trip.

    `reserved`: held credits this consumption may use (a capture uses its own hold);
    `release_held`: how much the account's held figure drops with it.
    Short: refuses (InsufficientCredits, nothing written) or, with `allow_overage`, takes
    what there is and records the rest as overage. Returns the lots taken.
    """
    with _refusals(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT lot_ids, quantities FROM credits_take(%s, %s, %s, %s, %s, %s, %s)",
            [txn.pk, account_id, quantity, txn.created_at, reserved, allow_overage, release_held],
        )
        lot_ids, quantities = cursor.fetchone()
    return [_Moved(lot_id, part) for lot_id, part in zip(lot_ids, quantities, strict=True)]


@contextmanager
def _refusals() -> Iterator[None]:
    """Turn the database's refusal (SQLSTATE CR001, raised by credits_take) into
    InsufficientCredits; the failed statement has undone its own writes."""
    try:
        yield
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) != "CR001":
            raise
        figures = json.loads(error.__cause__.diag.message_detail)
        raise InsufficientCredits(
            shortfall=figures["shortfall"], available=figures["available"]
        ) from None


# --- Holds ---------------------------------------------------------------------------------


def hold_place(
    *,
    account: Account,
    quantity: int,
    reference: str,
    idempotency_key: str,
    actor: User | None = None,
    allow_overage: bool = False,
) -> Hold:
    """Reserve credits without deducting them ("assigned"). Refused when the account's
    available credits are short, unless `allow_overage` (seed 002: billed when started)."""
    (hold,) = holds_place_batch(
        account=account,
        quantities=[quantity],
        references=[reference],
        idempotency_key=idempotency_key,
        actor=actor,
        allow_overage=allow_overage,
    )
    return hold


def holds_place_batch(
    *,
    account: Account,
    quantities: list[int],
    references: list[str],
    idempotency_key: str,
    actor: User | None = None,
    allow_overage: bool = False,
) -> list[Hold]:
    """Many holds on one account in one transaction (a plan confirmed for many people): all
    or none, a constant number of statements whatever their number. A replay returns the
    same holds."""
    if not quantities or len(quantities) != len(references):
        raise InvalidOperation("Give one reference per hold, and at least one hold.")
    for quantity in quantities:
        _require_positive(quantity)
    total = sum(quantities)
    params = {"account": account.pk, "quantities": quantities, "allow_overage": allow_overage}
    with transaction.atomic():
        txn, created = _begin(
            organization=account.organization_id,
            kind=Kind.HOLD,
            key=idempotency_key,
            params=params,
            account=account,
            quantity=total,
            reference=references[0] if len(references) == 1 else f"{len(quantities)} assignments",
            actor=actor,
        )
        if not created:
            return list(Hold.objects.filter(placed_by=txn).order_by("pk"))
        locked = _lock_accounts([account.pk])[account.pk]
        available = _usable_total(locked, txn.created_at) - locked.held
        if total > available and not allow_overage:
            raise InsufficientCredits(
                shortfall=total - max(available, 0), available=max(available, 0)
            )
        Account.objects.filter(pk=locked.pk).update(held=F("held") + total)
        _available_lowered(account.organization_id)
        return Hold.objects.bulk_create(
            Hold(
                account=locked,
                quantity=quantity,
                reference=reference,
                allow_overage=allow_overage,
                placed_by=txn,
                created_at=txn.created_at,
            )
            for quantity, reference in zip(quantities, references, strict=True)
        )


def hold_capture(
    *, hold: Hold, actor: User | None = None, allow_overage: bool = False
) -> LedgerTransaction:
    """Deduct a hold's credits (the learner started). Exactly once: a replay returns the same
    transaction; a released hold raises HoldNotActive. When the balance no longer covers the
    hold (lots expired meanwhile), it raises InsufficientCredits unless overage is allowed
    here or was allowed when the hold was placed."""

    def capture(txn: LedgerTransaction, locked: Hold) -> None:
        # This hold's own reservation is what it captures; other holds stay reserved.
        _take(
            txn,
            locked.account_id,
            locked.quantity,
            allow_overage=allow_overage or locked.allow_overage,
            reserved=locked.quantity,
            release_held=locked.quantity,
        )

    return _resolve_hold(hold, Kind.CAPTURE, Hold.Status.CAPTURED, actor, capture)


def hold_release(*, hold: Hold, actor: User | None = None) -> LedgerTransaction:
    """Give a hold's credits back to available (an invite cancelled, an employee who left)."""

    def release(txn: LedgerTransaction, locked: Hold) -> None:
        Account.objects.filter(pk=locked.account_id).update(held=F("held") - locked.quantity)

    return _resolve_hold(hold, Kind.RELEASE, Hold.Status.RELEASED, actor, release)


def _resolve_hold(
    hold: Hold,
    kind: str,
    status: str,
    actor: User | None,
    apply: Callable[[LedgerTransaction, Hold], None],
) -> LedgerTransaction:
    """What capture and release share. The key is the hold's own (`hold:<id>:<kind>`), so a
    retry returns the first result; a hold already resolved the other way is refused."""
    with transaction.atomic():
        txn, created = _begin(
            organization=_organization_of(hold),
            kind=kind,
            key=f"hold:{hold.pk}:{kind}",
            params={"hold": hold.pk},
            account_id=hold.account_id,
            quantity=hold.quantity,
            reference=hold.reference,
            actor=actor,
        )
        if not created:
            return txn
        _lock_accounts([hold.account_id])
        locked = Hold.objects.select_for_update().get(pk=hold.pk)
        if locked.status != Hold.Status.ACTIVE:
            raise HoldNotActive(locked)
        apply(txn, locked)
        locked.status = status
        locked.resolved_by = txn
        locked.save(update_fields=["status", "resolved_by"])
    return txn


def _organization_of(hold: Hold) -> int:
    return Account.objects.values_list("organization_id", flat=True).get(pk=hold.account_id)


# --- Allocation ----------------------------------------------------------------------------


def credits_transfer(
    *,
    source: Account,
    destination: Account,
    quantity: int,
    idempotency_key: str,
    actor: User | None = None,
) -> LedgerTransaction:
    """Move available credits between two accounts of one organization (pool → course →
    manager, or back), earliest-expiring lots first; each lot keeps its expiry."""
    _require_positive(quantity)
    if source.organization_id != destination.organization_id:
        raise InvalidOperation("Credits move only between accounts of one organization.")
    if source.pk == destination.pk:
        raise InvalidOperation("Source and destination are the same account.")
    params = {"source": source.pk, "destination": destination.pk, "quantity": quantity}
    with transaction.atomic():
        txn, created = _begin(
            organization=source.organization_id,
            kind=Kind.TRANSFER,
            key=idempotency_key,
            params=params,
            account=source,
            quantity=quantity,
            reference=f"{source} → {destination}",
            actor=actor,
        )
        if not created:
            return txn
        _lock_accounts([source.pk, destination.pk])
        moved = _take(txn, source.pk, quantity, allow_overage=False)
        _credit(txn, destination.pk, moved)
        if source.kind == Account.Kind.POOL:
            _available_lowered(source.organization_id)
    return txn


# --- Expiry, revocation, adjustment ---------------------------------------------------------

# Lots expire in short batches, each its own transaction: a batch locks the accounts of its
# lots' organizations for one statement and its commit, so a redemption in an organization
# under expiry waits for one batch at most; and a run cut short (a time limit, a lost worker)
# keeps every batch it committed, the next run carrying on with what is still due. The size
# is settings.CREDITS_EXPIRY_BATCH_LOTS.

# The lots due at the start of the run, earliest first, materialised once on the server (a
# cursor WITH HOLD outlives the transactions of the batches) so that no batch rescans what
# earlier batches expired. Needs a session of its own: not a transaction-pooling proxy.
_DUE_LOTS_CURSOR_SQL = """
DECLARE {name} NO SCROLL CURSOR WITH HOLD FOR
SELECT id, organization_id FROM credits_lot WHERE expires_at <= %(now)s AND expired_at IS NULL
ORDER BY expires_at, id
"""

# Every account of the batch's organizations, in id order like every other writer: a superset
# of the accounts holding its lots (credits move only within an organization), emptied
# holdings included (a reversal or a restore may credit one back), found from the lots alone:
# looking up their holders first cost a fifth of the batch. In the same round trip, settings
# for the batch's transaction only:
# - Not waiting for the WAL flush shortens each batch's locks. A crash can lose only the last
#   batches, whole, and only those that no later synchronous commit depends on (its flush
#   covers them): their lots are still due and the next run expires them.
# - No bitmap scans and no sequential scans: a batch reads its rows by id. Without fresh
#   statistics (lots just loaded in bulk) the planner ANDed the ids with a bitmap of the
#   partial index of every due lot, reading a million index entries in each batch, or read
#   the whole holdings table for a thousand lot ids (until autovacuum's ANALYZE came by).
_LOCK_ORGANIZATION_ACCOUNTS_SQL = """
WITH batch_settings AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true),
           set_config('enable_bitmapscan', 'off', true),
           set_config('enable_seqscan', 'off', true)
)
SELECT a.id FROM credits_account a, batch_settings
WHERE a.organization_id = ANY(%(organizations)s)
ORDER BY a.id FOR UPDATE OF a
"""

# Batches fetched from the cursor per round trip.
_BATCHES_PER_FETCH = 10

# One batch in one statement: mark its lots still due, write one transaction per organization
# and one entry per holding, and zero those holdings and the accounts' balances. Every table is
# reached by index, by ids: an `= ANY(ARRAY(...))` list is one the planner cannot mistake for
# most of the table (a literal list of 2,000 ids, without statistics yet on freshly loaded
# tables, made it read every due lot in each batch: 70 s instead of 15 for 1,000,000). The
# lots' rows are locked here, after their accounts (the ledger's lock order: whoever else
# writes a lot row holds that lot's accounts first, so this never waits for a lot while holding
# an account another writer needs). A lot held by an account that was not locked (one created
# since, or outside the organization: neither can happen today) is left for the next run
# rather than touching an account out of order.
_EXPIRE_BATCH_SQL = """
WITH batch AS MATERIALIZED (
    SELECT unnest(%(lots)s::bigint[]) AS id
), held AS MATERIALIZED (
    SELECT id, account_id, lot_id, quantity FROM credits_holding
    WHERE lot_id = ANY(ARRAY(SELECT id FROM batch))
), unlocked AS MATERIALIZED (
    SELECT DISTINCT lot_id FROM held WHERE account_id <> ALL(%(accounts)s)
), due AS (
    UPDATE credits_lot l SET expired_at = %(now)s
    WHERE l.id = ANY(ARRAY(SELECT id FROM batch))
      AND l.expired_at IS NULL AND l.expires_at <= %(now)s
      AND l.id <> ALL(ARRAY(SELECT lot_id FROM unlocked))
    RETURNING l.id, l.organization_id
), moved AS (
    SELECT held.id, held.account_id, held.lot_id, held.quantity, due.organization_id
    FROM held JOIN due ON due.id = held.lot_id
    WHERE held.quantity > 0
), txns AS (
    INSERT INTO credits_ledgertransaction
        (organization_id, kind, idempotency_key, fingerprint, quantity, reference, memo, created_at)
    SELECT organization_id, 'expire', %(key)s, '', SUM(quantity), '',
           'Validity ended: what was left of each lot expired.', %(now)s
    FROM moved GROUP BY organization_id
    RETURNING id, organization_id
), entries AS (
    INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
    SELECT txns.id, moved.account_id, moved.lot_id, -moved.quantity, %(now)s
    FROM moved JOIN txns USING (organization_id)
    RETURNING 1
), emptied AS (
    -- Joined instead, the planner would read the holdings table (or its whole primary key,
    -- in a merge join) in every batch.
    UPDATE credits_holding h SET quantity = 0
    WHERE h.id = ANY(ARRAY(SELECT id FROM moved))
    RETURNING 1
), balances AS (
    UPDATE credits_account a SET balance = a.balance - s.total
    FROM (SELECT account_id, SUM(quantity) AS total FROM moved GROUP BY account_id) s
    WHERE a.id = s.account_id AND a.id = ANY(%(accounts)s)
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM due), (SELECT COUNT(*) FROM entries),
       (SELECT COUNT(*) FROM emptied), (SELECT COUNT(*) FROM balances)
"""


def lots_expire(
    *,
    now: dt.datetime | None = None,
    batch_size: int | None = None,
    deadline: float | None = None,
) -> int:
    """Expire every lot whose validity had ended at `now`: what is left of it leaves every
    account that holds it. Returns how many lots expired.

    In batches of `batch_size` lots (settings.CREDITS_EXPIRY_BATCH_LOTS unless given), each
    its own short transaction (when called outside one): idempotent (an expired lot is marked
    and never expired again), resumable (a run that stops, or dies, leaves the rest due for
    the next) and safe to run concurrently (a second run finds the lots of the first expired
    and skips them). `deadline` (a `time.monotonic()` value) stops the run between batches
    once passed."""
    now = now or timezone.now()
    batch_size = batch_size or settings.CREDITS_EXPIRY_BATCH_LOTS
    if batch_size < 1:
        raise InvalidOperation("An expiry batch needs at least one lot.")
    name = f"credits_due_lots_{uuid.uuid4().hex}"
    expired = batches = 0
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(_DUE_LOTS_CURSOR_SQL.format(name=name), {"now": now})
    pending: list[tuple[int, int]] = []
    try:
        while deadline is None or time.monotonic() < deadline:
            if not pending:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"FETCH FORWARD {int(batch_size) * _BATCHES_PER_FETCH} FROM {name}"
                    )
                    pending = cursor.fetchall()
                if not pending:
                    break
            rows, pending = pending[:batch_size], pending[batch_size:]
            expired += _expire_batch(
                lots=[row[0] for row in rows],
                organizations=sorted({row[1] for row in rows}),
                now=now,
            )
            batches += 1
        else:
            log.info("lots_expire stopped at its deadline; the next run expires the rest")
    finally:
        # The cursor would otherwise live as long as the connection. A connection that
        # broke has lost it already.
        with suppress(DatabaseError, InterfaceError), connection.cursor() as cursor:
            cursor.execute(f"CLOSE {name}")
    log.info(
        "lots_expire: %s lots in %s batches, %.1f s", expired, batches, time.monotonic() - started
    )
    return expired


def _expire_batch(*, lots: list[int], organizations: list[int], now: dt.datetime) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_ORGANIZATION_ACCOUNTS_SQL, {"organizations": organizations})
        accounts = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            _EXPIRE_BATCH_SQL,
            {"now": now, "lots": lots, "accounts": accounts, "key": f"expire:{uuid.uuid4()}"},
        )
        return cursor.fetchone()[0]


# What is left of one lot leaves every account holding it: entries, holdings, balances.
_REVOKE_SQL = """
WITH moved AS (
    SELECT id, account_id, quantity FROM credits_holding
    WHERE lot_id = %(lot)s AND quantity > 0
), entries AS (
    INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
    SELECT %(txn)s, account_id, %(lot)s, -quantity, %(now)s FROM moved
    RETURNING 1
), emptied AS (
    -- Less what was read, not "= 0": a holding that changed since the read (it cannot,
    -- under the caller's locks) would fail holding_nonneg or keep its rest, never vanish
    -- without its entry.
    UPDATE credits_holding h SET quantity = h.quantity - moved.quantity
    FROM moved WHERE h.id = moved.id RETURNING 1
)
UPDATE credits_account a SET balance = a.balance - moved.quantity
FROM moved WHERE a.id = moved.account_id
"""


# At most %(quantity)s of what is left of one lot leaves the accounts holding it: the pool
# first (credits nobody has earmarked yet), then course accounts, then managers' accounts,
# each kind in id order. `before` is what the accounts ahead of a holding already give.
_REVOKE_PART_SQL = """
WITH held AS (
    SELECT h.id, h.account_id, h.quantity,
           SUM(h.quantity) OVER (
               ORDER BY (a.kind <> 'pool'), (a.kind <> 'course'), h.account_id
           ) - h.quantity AS before
    FROM credits_holding h JOIN credits_account a ON a.id = h.account_id
    WHERE h.lot_id = %(lot)s AND h.quantity > 0
), moved AS (
    SELECT id, account_id, LEAST(quantity, %(quantity)s - before) AS quantity
    FROM held WHERE before < %(quantity)s
), entries AS (
    INSERT INTO credits_ledgerentry (transaction_id, account_id, lot_id, quantity, created_at)
    SELECT %(txn)s, account_id, %(lot)s, -quantity, %(now)s FROM moved
    RETURNING 1
), taken AS (
    UPDATE credits_holding h SET quantity = h.quantity - moved.quantity
    FROM moved WHERE h.id = moved.id RETURNING 1
)
UPDATE credits_account a SET balance = a.balance - moved.quantity
FROM moved WHERE a.id = moved.account_id
"""


def lot_revoke(
    *,
    lot: Lot,
    reason: str,
    idempotency_key: str,
    actor: User | None = None,
    quantity: int | None = None,
) -> LedgerTransaction:
    """Remove what is left of a lot from every account holding it (a Stripe refund or
    dispute). Spent credits stay spent: nothing goes below zero.

    With `quantity`, at most that many of what is left go (a partial refund, a dispute), the
    pool's first; the lot stays valid for the rest, so it is not marked revoked, and
    `lot_restore` can give the part back. The transaction's `quantity` is what was asked;
    its entries say what was taken."""
    if quantity is not None:
        _require_positive(quantity)
    params = {"lot": lot.pk} if quantity is None else {"lot": lot.pk, "quantity": quantity}
    with transaction.atomic():
        txn, created = _begin(
            organization=lot.organization_id,
            kind=Kind.REVOKE,
            key=idempotency_key,
            params=params,
            quantity=quantity or 0,
            reference=lot.reference,
            memo=reason,
            actor=actor,
        )
        if not created:
            return txn
        # Every account of the organization, in id order, as the expiry does: a superset of
        # the lot's holders (credits move only within an organization) that no transfer can
        # slip past. Locking only the holders read beforehand let a transfer, committed
        # between that read and the lock, carry part of the lot to an account this never
        # saw: the lot ended revoked with credits still in it. Emptied holdings count too: a
        # reversal may give credits back into one, and must either finish before this reads
        # the holdings or find the lot revoked.
        account_ids = list(
            Account.objects.filter(organization_id=lot.organization_id).values_list("id", flat=True)
        )
        _lock_accounts(account_ids)
        figures = {"txn": txn.pk, "lot": lot.pk, "now": txn.created_at, "quantity": quantity}
        with connection.cursor() as cursor:
            cursor.execute(_REVOKE_SQL if quantity is None else _REVOKE_PART_SQL, figures)
        if quantity is None:
            Lot.objects.filter(pk=lot.pk, revoked_at__isnull=True).update(revoked_at=txn.created_at)
    return txn


# What one revocation took, per account (its entries never change: the ledger is append-only).
_REVOKED_SQL = """
SELECT account_id, lot_id, -SUM(quantity) FROM credits_ledgerentry
WHERE transaction_id = %s GROUP BY account_id, lot_id ORDER BY account_id
"""


def lot_restore(
    *, revocation: LedgerTransaction, reason: str, actor: User | None = None
) -> LedgerTransaction:
    """Give back what one revocation took (a Stripe dispute won after its credits were
    revoked): a transaction of its own, kind `restore`, crediting the same accounts with the
    same lot, which keeps its expiry.

    Once per revocation whoever asks: the key is the revocation's own (`restore:<id>`), so a
    retry returns the first result. A lot that has expired or been revoked whole since gets
    nothing back (those credits would have gone with it): the restoration then has no
    entries. Its `quantity` is what the revocation took."""
    if revocation.kind != Kind.REVOKE:
        raise InvalidOperation("Only a revocation can be restored.")
    if not reason.strip():
        raise InvalidOperation("A restoration needs a reason.")
    with connection.cursor() as cursor:
        cursor.execute(_REVOKED_SQL, [revocation.pk])
        taken = cursor.fetchall()
    with transaction.atomic():
        txn, created = _begin(
            organization=revocation.organization_id,
            kind=Kind.RESTORE,
            key=f"restore:{revocation.pk}",
            params={"revocation": revocation.pk},
            quantity=sum(row[2] for row in taken),
            reference=revocation.reference,
            memo=reason.strip(),
            actor=actor,
        )
        if not created or not taken:
            return txn
        _lock_accounts([row[0] for row in taken])
        # Read under the account locks: an expiry or a whole revocation of the lot holds them
        # while it marks the lot, so this sees the lot as they leave it.
        usable = set(
            Lot.objects.filter(
                rules.lot_usable(txn.created_at), pk__in={row[1] for row in taken}
            ).values_list("pk", flat=True)
        )
        for account_id, lot_id, quantity in taken:
            if lot_id in usable and quantity > 0:
                _credit(txn, account_id, [_Moved(lot_id, quantity)])
    return txn


def lot_extend(
    *,
    lot: Lot,
    expires_at: dt.datetime,
    reason: str,
    actor: User,
    idempotency_key: str,
    now: dt.datetime | None = None,
) -> LedgerTransaction:
    """Support moves a lot's expiry later, with a reason: a transaction of kind extend (no
    entries: the credits stay where they are), the lot's new expiry copied onto its holdings
    by the lot_dates_moved trigger. Only a lot still usable can be extended, and only later:
    an expired or revoked lot, a lot already past its expiry (its credits are gone, even if
    the hourly job has not marked it yet) or a lot that never expires is refused, so that no
    extension brings back credits or shortens what a customer was promised."""
    now = now or timezone.now()
    reason = reason.strip()
    if not reason:
        raise InvalidOperation("Say why the expiry is extended.")
    _require_support(actor)
    if timezone.is_naive(expires_at):
        raise InvalidOperation("An expiry must carry a time zone.")
    params = {"lot": lot.pk, "expires_at": expires_at, "memo": reason}
    with transaction.atomic():
        txn, created = _begin(
            organization=lot.organization_id,
            kind=Kind.EXTEND,
            key=idempotency_key,
            params=params,
            quantity=0,
            reference=f"Lot {lot.pk}",
            memo=reason,
            actor=actor,
        )
        if not created:
            return txn
        # The ledger's lock order: every account of the organization (as the expiry and a
        # revocation lock them: the holders read beforehand could change before the lock),
        # then the lot's row, without the key lock that the entries' and holdings' checks
        # at commit (FOR KEY SHARE on the lot) would wait for.
        _lock_accounts(
            list(
                Account.objects.filter(organization_id=lot.organization_id).values_list(
                    "id", flat=True
                )
            )
        )
        current = Lot.objects.select_for_update(no_key=True).get(pk=lot.pk)
        if current.expired_at is not None or current.revoked_at is not None:
            raise InvalidOperation(
                f"Lot {lot.pk} has expired or been revoked: its credits are gone. Grant "
                "goodwill credits instead."
            )
        if current.expires_at is None:
            raise InvalidOperation(f"Lot {lot.pk} never expires: there is nothing to extend.")
        if current.expires_at <= now:
            raise InvalidOperation(
                f"Lot {lot.pk}'s validity has ended already. Grant goodwill credits instead."
            )
        if expires_at <= current.expires_at:
            raise InvalidOperation(
                f"The new expiry must be later than the current one "
                f"({current.expires_at:%Y-%m-%d %H:%M %Z}): an extension never shortens a lot."
            )
        current.expires_at = expires_at
        current.save(update_fields=["expires_at"])
    return txn


def credits_adjust(
    *, account: Account, quantity: int, reason: str, actor: User, idempotency_key: str
) -> LedgerTransaction:
    """Support's audited correction: a positive quantity adds a lot to the account, a
    negative one deducts from its available credits."""
    if quantity == 0:
        raise InvalidOperation("An adjustment needs a quantity other than zero.")
    if not reason.strip():
        raise InvalidOperation("An adjustment needs a reason.")
    if actor is None or not actor.is_staff:
        raise InvalidOperation("Only support staff adjust credits.")
    organization = Organization.objects.get(pk=account.organization_id)
    params = {"account": account.pk, "quantity": quantity}
    with transaction.atomic():
        txn, created = _begin(
            organization=organization,
            kind=Kind.ADJUST,
            key=idempotency_key,
            params=params,
            account=account,
            quantity=abs(quantity),
            reference="support adjustment",
            memo=reason,
            actor=actor,
        )
        if not created:
            return txn
        locked = _lock_accounts([account.pk])[account.pk]
        if quantity > 0:
            _create_lot(
                txn,
                account=locked,
                quantity=quantity,
                source=Lot.Source.ADJUSTMENT,
                invoiced_at=txn.created_at,
                expires_at=None,
                reference="",
                organization=organization,
            )
        else:
            _take(txn, locked.pk, -quantity, allow_overage=False)
    return txn


# --- Reversal ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReversalFigures:
    """Where the `requested` credits of a reversal went: `returned` to their lots (available
    again), `lapsed` because their lot has expired or been revoked since (they would have gone
    with it), or `overage`: the original took them beyond the balance, billed as overage, so
    there is no lot to give them back to. The three add up to `requested`."""

    requested: int
    returned: int
    lapsed: int
    overage: int


# Earlier reversals of one original, the one being written excepted.
_REVERSED_BEFORE_SQL = """
SELECT COALESCE(SUM(quantity), 0) FROM credits_ledgertransaction
WHERE reversal_of_id = %(original)s AND kind = 'reverse' AND id <> %(txn)s
"""

# Each lot the original took from: how much it took, how much earlier reversals of it gave
# back or recorded as lapsed (their positive entries), and whether the lot can still hold
# credits now. Last taken first: the exact reverse of the consumption order in credits_take.
_REVERSAL_LOTS_TEMPLATE = """
SELECT l.id,
       -COALESCE(SUM(e.quantity) FILTER (
           WHERE e.transaction_id = %(original)s AND e.quantity < 0), 0) AS taken,
       COALESCE(SUM(e.quantity) FILTER (
           WHERE e.transaction_id <> %(original)s AND e.quantity > 0), 0) AS given_back,
       credits_lot_usable(l.expires_at, l.expired_at, l.revoked_at, %(now)s) AS usable
FROM credits_ledgerentry e JOIN credits_lot l ON l.id = e.lot_id
WHERE e.account_id = %(account)s
  AND (e.transaction_id = %(original)s
       OR e.transaction_id IN (SELECT id FROM credits_ledgertransaction
                               WHERE reversal_of_id = %(original)s AND kind = 'reverse'
                                 AND id <> %(txn)s))
GROUP BY l.id
ORDER BY {order}
"""
_REVERSAL_LOTS_SQL = _REVERSAL_LOTS_TEMPLATE.format(
    order=rules.consumption_order_sql("l", reverse=True)
)


def credits_reverse(
    *,
    original: LedgerTransaction,
    quantity: int,
    reason: str,
    idempotency_key: str,
    actor: User | None = None,
) -> LedgerTransaction:
    """Give back `quantity` credits of a redemption or capture (`original`): a transaction of
    its own, kind `reverse`, pointing at the original, crediting the same account and the
    same lots the original took from. Each lot keeps its expiry; no lot is created.

    - Last taken first: overage first (the original took it after the lots ran out), then
      the lots latest-expiring first.
    - Never more than the original's quantity less every earlier reversal of it: asking for
      more raises ReversalTooLarge and changes nothing.
    - A lot that has expired or been revoked since gets nothing back: those credits would have
      expired (or been refunded) with it. They still count as reversed, recorded as a pair of
      entries on that lot (+n, then -n), so that part of the original is used up while the
      balance stays as it is.
    - Overage gets no credits back (it came from no lot): it counts as reversed and has no
      entry; what of it is not billed yet is taken off the bill (`_overage_forgive`).

    The transaction's `quantity` is what was asked; its entries' sum is what became available
    again. `reversal_figures()` reads the split back.
    """
    _require_positive(quantity)
    if not reason.strip():
        raise InvalidOperation("A reversal needs a reason.")
    if original.kind not in rules.REVERSIBLE_KINDS or original.account_id is None:
        raise InvalidOperation("Only a redemption or the start of an assignment can be reversed.")
    account_id = original.account_id
    params = {"original": original.pk, "quantity": quantity}
    with transaction.atomic():
        txn, created = _begin(
            organization=original.organization_id,
            kind=Kind.REVERSE,
            key=idempotency_key,
            params=params,
            account_id=account_id,
            quantity=quantity,
            reference=f"Reversal of #{original.pk}: {original.reference}"[:255],
            memo=reason.strip(),
            actor=actor,
            reversal_of_id=original.pk,
        )
        if not created:
            return txn
        # Concurrent reversals of one original credit the same account, so this lock makes
        # them take turns: each reads what the ones before it committed.
        _lock_accounts([account_id])
        ids = {"original": original.pk, "txn": txn.pk, "account": account_id}
        with connection.cursor() as cursor:
            cursor.execute(_REVERSED_BEFORE_SQL, ids)
            (reversed_before,) = cursor.fetchone()
            cursor.execute(_REVERSAL_LOTS_SQL, {**ids, "now": txn.created_at})
            lots = cursor.fetchall()
        reversible = original.quantity - reversed_before
        if quantity > reversible:
            raise ReversalTooLarge(requested=quantity, reversible=max(reversible, 0))
        taken = sum(row[1] for row in lots)
        given_back = sum(row[2] for row in lots)
        # Earlier reversals used up the overage before any lot; what they did not give back
        # to a lot was overage.
        overage_left = max((original.quantity - taken) - (reversed_before - given_back), 0)
        overage_part = min(quantity, overage_left)
        left = quantity - overage_part
        if overage_part:
            _overage_forgive(original, overage_part)
        returned: list[_Moved] = []
        lapsed: list[_Moved] = []
        for lot_id, lot_taken, lot_given_back, usable in lots:
            if left == 0:
                break
            part = min(left, lot_taken - lot_given_back)
            if part > 0:
                (returned if usable else lapsed).append(_Moved(lot_id, part))
                left -= part
        if left:
            # The lots and the earlier reversals disagree with the totals: refuse rather
            # than give back credits no lot accounts for.
            raise InvalidOperation(f"Transaction #{original.pk} cannot be reversed as recorded.")
        if returned:
            _credit(txn, account_id, returned)
        if lapsed:
            LedgerEntry.objects.bulk_create(
                LedgerEntry(
                    transaction=txn,
                    account_id=account_id,
                    lot_id=moved.lot_id,
                    quantity=sign * moved.quantity,
                    created_at=txn.created_at,
                )
                for moved in lapsed
                for sign in (1, -1)
            )
    return txn


def _overage_forgive(original: LedgerTransaction, quantity: int) -> None:
    """Reversed overage that is not billed yet is not billed at all: the original's overage
    row shrinks by it (and goes when nothing is left). Overage already on an invoice, or on
    one being made, stays: crediting an invoice is billing's business."""
    # Not billed and not claimed by an invoice being made (`overage_claim`): an invoice in
    # the making already counted the row at its quantity.
    row = (
        Overage.objects.select_for_update()
        .filter(transaction_id=original.pk, billed_at__isnull=True, invoice_reference="")
        .first()
    )
    if row is None:
        return
    if row.quantity <= quantity:
        row.delete()
    else:
        Overage.objects.filter(pk=row.pk).update(quantity=F("quantity") - quantity)


def reversal_figures(*, reversal: LedgerTransaction) -> ReversalFigures:
    """How a reversal's requested credits split into returned, lapsed and overage."""
    if reversal.kind != Kind.REVERSE:
        raise InvalidOperation("That transaction is not a reversal.")
    parts = list(
        LedgerEntry.objects.filter(transaction=reversal).values_list("quantity", flat=True)
    )
    back = sum(part for part in parts if part > 0)
    lapsed = -sum(part for part in parts if part < 0)
    return ReversalFigures(
        requested=reversal.quantity,
        returned=back - lapsed,
        lapsed=lapsed,
        overage=reversal.quantity - back,
    )


# --- Internals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Moved:
    lot_id: int
    quantity: int


SUPPORT_PERMISSION = "credits.use_support_tools"


def _require_support(actor: User | None) -> None:
    """Support's tools give credits away: only staff granted them may use them."""
    if actor is None or not actor.is_staff or not actor.has_perm(SUPPORT_PERMISSION):
        raise InvalidOperation("Only support staff with the support tools permission may do this.")


def _available_lowered(organization_id: int) -> None:
    """Tell whoever listens (auto top-up) once this write commits: never inside the ledger's
    locks, and never for a write that rolls back."""
    transaction.on_commit(
        lambda: signals.available_lowered.send(sender=Account, organization_id=organization_id),
        robust=True,
    )


def _require_positive(quantity: int) -> None:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise InvalidOperation("The number of credits must be a whole number above zero.")


def _as_datetime(value: dt.datetime | dt.date, organization: Organization) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise InvalidOperation("Invoice dates must carry a time zone.")
        return value
    # A bare date is midnight where the organization is.
    return dt.datetime.combine(value, dt.time.min, tzinfo=zoneinfo.ZoneInfo(organization.time_zone))


def _require_key(key: str) -> None:
    if not key or len(key) > 255:
        raise InvalidOperation("Every credit operation needs an idempotency key (1-255 chars).")


def _fingerprint(kind: str, params: dict) -> str:
    canonical = json.dumps({"kind": kind, **params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# Only a reversal names `reversal_of_id`: every other write stays valid on the schema before
# credits 0008, which a migration running live ledger code may still be on (training 0003
# releases holds through hold_release).
_BEGIN_SQL = """
INSERT INTO credits_ledgertransaction
    (organization_id, kind, idempotency_key, fingerprint, account_id, quantity, reference, memo,
     actor_id, created_at{columns})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s{values})
ON CONFLICT (organization_id, idempotency_key) DO NOTHING
RETURNING id
"""


def _begin(
    *,
    organization: Organization | int,
    kind: str,
    key: str,
    params: dict,
    quantity: int,
    reference: str = "",
    memo: str = "",
    account: Account | None = None,
    account_id: int | None = None,
    actor: User | None = None,
    reversal_of_id: int | None = None,
) -> tuple[LedgerTransaction, bool]:
    """Claim the idempotency key: (new transaction, True), or (the first one, False).

    The INSERT takes the key's unique-index slot first. A concurrent call with the same key
    waits on that slot until the first commits (then gets the first result) or rolls back
    (then runs itself), so one key never produces two transactions.
    """
    _require_key(key)
    organization_id = organization if isinstance(organization, int) else organization.pk
    account_id = account.pk if account is not None else account_id
    fingerprint = _fingerprint(kind, params)
    now = timezone.now()
    actor_id = actor.pk if actor is not None else None
    values = [
        organization_id,
        kind,
        key,
        fingerprint,
        account_id,
        quantity,
        reference,
        memo,
        actor_id,
        now,
    ]
    sql = _BEGIN_SQL.format(columns="", values="")
    if reversal_of_id is not None:
        sql = _BEGIN_SQL.format(columns=", reversal_of_id", values=", %s")
        values.append(reversal_of_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        first = LedgerTransaction.objects.get(organization_id=organization_id, idempotency_key=key)
        if first.fingerprint != fingerprint:
            raise IdempotencyConflict(key)
        return first, False
    txn = _transaction_instance(
        id=row[0],
        organization_id=organization_id,
        kind=kind,
        idempotency_key=key,
        fingerprint=fingerprint,
        account_id=account_id,
        quantity=quantity,
        reference=reference,
        memo=memo,
        actor_id=actor_id,
        created_at=now,
        reversal_of_id=reversal_of_id,
    )
    return txn, True


def _transaction_instance(**fields) -> LedgerTransaction:
    """The row just inserted, as a model instance, without reading it back."""
    txn = LedgerTransaction(**fields)
    txn._state.adding = False
    # As if loaded: related managers (e.g. a LevelChange's reversals.set) need its database.
    txn._state.db = connection.alias
    return txn


_LOCK_SQL = """
SELECT id, organization_id, balance, held FROM credits_account
WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""


def accounts_lock(*, accounts: list[Account]) -> None:
    """Lock accounts in the ledger's one order (ascending id) inside the caller's
    transaction, before a sequence of writes that will touch them in another order (an
    approval moving pool → course → manager): the writes then wait for nobody."""
    if not connection.in_atomic_block:
        raise InvalidOperation("Lock accounts inside a transaction.")
    _lock_accounts([account.pk for account in accounts])


def _lock_accounts(account_ids: list[int]) -> dict[int, Account]:
    """SELECT ... FOR UPDATE in ascending id order: the one lock order of the whole ledger."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, [ids])
        rows = cursor.fetchall()
    accounts = {}
    for pk, organization_id, balance, held in rows:
        account = Account(id=pk, organization_id=organization_id, balance=balance, held=held)
        account._state.adding = False
        accounts[pk] = account
    return accounts


# The account's live holdings of lots already past their expiry that the hourly job has not
# marked yet (index holding_live_order, a short range): what its cached balance still counts
# but nobody may spend. Marked and revoked lots have no live holding (the audit proves it).
_PAST_DUE_SQL = """
SELECT COALESCE(SUM(h.quantity), 0) FROM credits_holding h
WHERE h.account_id = %s AND h.live AND h.lot_expires_at <= %s
"""


def _usable_total(account: Account, now: dt.datetime) -> int:
    """Credits of lots still valid at `now` (expired lots count for nothing even before the
    expiry job has run): the cached balance less the past-due holdings, the rule credits_take
    applies, so a hold and a redemption never disagree on what there is. Call with the
    account locked (`account` as _lock_accounts read it)."""
    with connection.cursor() as cursor:
        cursor.execute(_PAST_DUE_SQL, [account.pk, now])
        return account.balance - cursor.fetchone()[0]


_CREDIT_SQL = """
INSERT INTO credits_holding (account_id, lot_id, quantity) VALUES {rows}
ON CONFLICT (account_id, lot_id)
DO UPDATE SET quantity = credits_holding.quantity + EXCLUDED.quantity
"""


def _credit(txn: LedgerTransaction, account_id: int, moved: list[_Moved]) -> None:
    rows = ", ".join(["(%s, %s, %s)"] * len(moved))
    with connection.cursor() as cursor:
        cursor.execute(
            _CREDIT_SQL.format(rows=rows),
            [value for m in moved for value in (account_id, m.lot_id, m.quantity)],
        )
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            transaction=txn,
            account_id=account_id,
            lot_id=m.lot_id,
            quantity=m.quantity,
            created_at=txn.created_at,
        )
        for m in moved
    )
    Account.objects.filter(pk=account_id).update(
        balance=F("balance") + sum(m.quantity for m in moved)
    )


def _create_lot(
    txn: LedgerTransaction,
    *,
    account: Account,
    quantity: int,
    source: str,
    invoiced_at: dt.datetime,
    expires_at: dt.datetime | None,
    reference: str,
    organization: Organization | None = None,
    expires_not_before: dt.datetime | None = None,
) -> Lot:
    organization = organization or Organization.objects.get(pk=txn.organization_id)
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    if expires_at is None and organization.lot_validity_days:
        # Counted in local calendar days, not in 24-hour steps: the hour of the payment, a
        # DST change or a leap day never moves the last usable day.
        expires_at = validity.validity_end(invoiced_at, organization.lot_validity_days, zone)
    if expires_at is not None and expires_not_before is not None:
        expires_at = max(expires_at, validity.end_of_local_day(expires_not_before, zone))
    try:
        with transaction.atomic():
            lot = Lot.objects.create(
                organization=organization,
                source=source,
                quantity=quantity,
                invoiced_at=invoiced_at,
                expires_at=expires_at,
                reference=reference,
                created_at=txn.created_at,
            )
    except IntegrityError as error:
        raise InvalidOperation(
            f"A lot with reference {reference!r} exists already, or its expiry is not after "
            "its invoice date."
        ) from error
    _credit(txn, account.pk, [_Moved(lot.pk, quantity)])
    return lot


# --- Overage billing -------------------------------------------------------------------------


def overage_lock_unbilled(*, organization: Organization, before: dt.datetime) -> int:
    """Lock the organization's unbilled overage recorded before `before` (for the caller's
    transaction) and return how many credits it adds up to."""
    rows = Overage.objects.select_for_update().filter(
        organization=organization, billed_at__isnull=True, created_at__lt=before
    )
    return sum(row.quantity for row in rows)


def overage_mark_billed(
    *, organization: Organization, before: dt.datetime, invoice_reference: str
) -> int:
    """Mark that overage billed on `invoice_reference`; returns how many rows."""
    return Overage.objects.filter(
        organization=organization, billed_at__isnull=True, created_at__lt=before
    ).update(billed_at=timezone.now(), invoice_reference=invoice_reference)


def overage_claim(
    *, organization: Organization, before: dt.datetime, claim: str, most: int | None = None
) -> int:
    """Mark the organization's unbilled overage recorded before `before` as being invoiced
    under `claim` (its `invoice_reference` until the invoice's id replaces it), and return
    how many credits the rows under that claim add up to. Committed before Stripe is asked,
    so no row stays locked during the call; rows claimed already keep their claim, so a
    retry finds the same total. With `most`, only the oldest rows that add up to at most
    that many credits are claimed (at least one row): the rest waits for the next invoice."""
    with transaction.atomic():
        unclaimed = Overage.objects.filter(
            organization=organization,
            billed_at__isnull=True,
            invoice_reference="",
            created_at__lt=before,
        )
        if most is None:
            unclaimed.update(invoice_reference=claim)
        else:
            chosen, total = [], 0
            for pk, quantity in (
                unclaimed.select_for_update()
                .order_by("created_at", "id")
                .values_list("id", "quantity")
            ):
                if chosen and total + quantity > most:
                    break
                chosen.append(pk)
                total += quantity
            Overage.objects.filter(pk__in=chosen).update(invoice_reference=claim)
        rows = Overage.objects.filter(
            organization=organization, billed_at__isnull=True, invoice_reference=claim
        )
        return sum(rows.values_list("quantity", flat=True))


def overage_mark_claimed_billed(
    *, organization: Organization, claim: str, invoice_reference: str
) -> int:
    """Mark the overage under `claim` billed on `invoice_reference`; returns how many rows
    (none on a retry: they are billed already)."""
    return Overage.objects.filter(
        organization=organization, billed_at__isnull=True, invoice_reference=claim
    ).update(billed_at=timezone.now(), invoice_reference=invoice_reference)


def overage_due_refresh(*, organization: Organization) -> dt.datetime | None:
    """After a billing run: move the organization's `OverageDue.since` to its oldest unbilled
    overage, or drop the row when none is left. Returns the new `since`. The row is locked
    first, so overage a concurrent transaction is recording (its trigger holds the same row)
    is counted once it commits, and a row dropped here is inserted again by that trigger."""
    with transaction.atomic():
        row = OverageDue.objects.select_for_update().filter(organization=organization).first()
        if row is None:
            return None
        oldest = Overage.objects.filter(organization=organization, billed_at__isnull=True)
        since = oldest.aggregate(since=Min("created_at"))["since"]
        if since is None:
            row.delete()
        elif since != row.since:
            OverageDue.objects.filter(pk=row.pk).update(since=since)
        return since

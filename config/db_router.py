"""Which database a query goes to: the primary ("default"), or the read replica for reads
that ask for it.

Every write, and every read by default, goes to "default". Reads made inside
`replica_reads()` (a context manager, or a decorator on a view) go to "replica": heavy,
read-only pages such as the credit history, its CSV and the reports. A replica is a little
behind the primary, so only reads that can show data a moment old belong there, never a
read that decides a write.

Reads stay on "default", even inside `replica_reads()`, when:

- "replica" is the same server as "default" (no `DATABASE_REPLICA_URL`; the test settings'
  mirror): one connection instead of two, and reads see the request's own writes;
- a transaction is open on "default": its reads must see its writes and its locks.

The flag lives in a context variable, so each thread and each asyncio task has its own: a
request's `replica_reads()` never moves another request's reads.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.db import DEFAULT_DB_ALIAS, connections

REPLICA_DB_ALIAS = "replica"

# How many replica_reads() blocks are open in this context (nested blocks count).
_replica_reads_depth: ContextVar[int] = ContextVar("replica_reads_depth", default=0)

F = TypeVar("F", bound=Callable[..., Any])


class replica_reads:  # lower case: used like a function, `with replica_reads():`
    """Send this block's reads (or this function's) to the read replica.

    `with replica_reads(): ...`, or `@replica_reads()` on a function, a generator function
    or a coroutine function. Writes inside still go to "default". A view's decorator covers
    what runs before it returns: a StreamingHttpResponse iterates its generator later, so
    decorate that generator too (each of its steps then runs inside).
    """

    def __enter__(self) -> None:
        # A counter, not a token kept on self: one instance may serve several threads.
        _replica_reads_depth.set(_replica_reads_depth.get() + 1)

    def __exit__(self, *exc_info: object) -> None:
        _replica_reads_depth.set(_replica_reads_depth.get() - 1)

    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator(*args, **kwargs):
                steps = func(*args, **kwargs)
                try:
                    while True:
                        with self:
                            try:
                                item = next(steps)
                            except StopIteration as stop:
                                return stop.value
                        yield item
                finally:
                    steps.close()

            return generator  # type: ignore[return-value]

        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def coroutine(*args, **kwargs):
                with self:
                    return await func(*args, **kwargs)

            return coroutine  # type: ignore[return-value]

        @functools.wraps(func)
        def function(*args, **kwargs):
            with self:
                return func(*args, **kwargs)

        return function  # type: ignore[return-value]


def reading_from_replica() -> bool:
    """Whether a read made here would go to the replica (see the module's docstring)."""
    if not _replica_reads_depth.get():
        return False
    primary = connections[DEFAULT_DB_ALIAS]
    if primary.in_atomic_block:
        return False
    replica = connections[REPLICA_DB_ALIAS].settings_dict
    return _server(replica) != _server(primary.settings_dict)


def _server(settings_dict: dict) -> tuple[str, str]:
    return (settings_dict.get("HOST") or "", str(settings_dict.get("PORT") or ""))


class PrimaryReplicaRouter:
    """Writes and ordinary reads on "default"; reads inside replica_reads() on "replica";
    migrations on "default" only (a replica receives them through replication)."""

    def db_for_read(self, model, **hints) -> str:
        return REPLICA_DB_ALIAS if reading_from_replica() else DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # Both aliases hold the same data.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS

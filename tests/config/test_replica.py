"""Reads inside `replica_reads()` are served by a real streaming replica of the primary,
every other query by the primary, and the replica refuses writes (config/db_router.py).

The replica is the server `DATABASE_REPLICA_URL` names when that is not `DATABASE_URL`'s
server; else, when the tests run on the local cluster, the local replica that `make test`
starts (`scripts/services.sh replica`, on `LOCAL_PG_REPLICA_PORT`). It replicates the whole
cluster, so it holds pytest-django's test database under the same name: the "replica" alias
(a test mirror of default, see config/settings/test.py) is pointed at it for this test only.
"""

import threading
import time

import environ
import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InternalError, OperationalError, connections, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import Organization
from config.db_router import REPLICA_DB_ALIAS, replica_reads
from tests.accounts.factories import OrganizationFactory

REPLAY_WAIT = 10  # seconds


def _server(settings_dict: dict) -> tuple[str, str]:
    return (settings_dict.get("HOST") or "", str(settings_dict.get("PORT") or ""))


def _replica_server() -> dict:
    """Where the streaming replica of default's server is (host, port and credentials)."""
    default = connections[DEFAULT_DB_ALIAS].settings_dict
    configured = environ.Env.db_url_config(settings.SERVERS["DATABASE_REPLICA_URL"])
    if _server(configured) != _server(default):
        return {key: configured[key] for key in ("HOST", "PORT", "USER", "PASSWORD")}
    if _server(default) == ("127.0.0.1", settings.SERVERS["LOCAL_PG_PORT"]):
        return {"HOST": "127.0.0.1", "PORT": int(settings.SERVERS["LOCAL_PG_REPLICA_PORT"])}
    pytest.skip(
        "no replica to test against: DATABASE_URL is not the local cluster and "
        "DATABASE_REPLICA_URL names no other server"
    )


def _fetch_one(alias: str, sql: str):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


@pytest.fixture
def replica():
    """The "replica" alias on the real replica, connected to the test database there."""
    server = _replica_server()
    connection = connections[REPLICA_DB_ALIAS]
    saved = {key: connection.settings_dict[key] for key in server}
    connection.close()
    connection.settings_dict.update(server)
    try:
        where = f"{server['HOST']}:{server['PORT']}/{connection.settings_dict['NAME']}"
        # The test database was created on the primary a moment ago: wait for its replay.
        deadline = time.monotonic() + REPLAY_WAIT
        while True:
            try:
                identity = _fetch_one(
                    REPLICA_DB_ALIAS,
                    "SELECT pg_is_in_recovery(), system_identifier FROM pg_control_system()",
                )
                break
            except OperationalError as error:
                connection.close()
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"no replica answers at {where} ({error}); `scripts/services.sh "
                        "replica` starts the local one (`make test` does)"
                    )
                time.sleep(0.1)
        primary = _fetch_one(DEFAULT_DB_ALIAS, "SELECT system_identifier FROM pg_control_system()")
        assert identity == (True, primary[0]), f"{where} is not a streaming replica of default"
        yield connection
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA_DB_ALIAS])
def test_reads_inside_replica_reads_are_served_by_the_streaming_replica(replica):
    primary = connections[DEFAULT_DB_ALIAS]
    # Committed at once (no transaction around the test), so it streams to the replica.
    organization = OrganizationFactory(name="Replicated", slug="replicated")
    by_pk = Organization.objects.filter(pk=organization.pk)

    deadline = time.monotonic() + REPLAY_WAIT
    with replica_reads():
        while not by_pk.exists():
            assert time.monotonic() < deadline, f"not replayed within {REPLAY_WAIT} s"
            time.sleep(0.05)

    # (a) Inside replica_reads(): the replica's connection, a server in recovery.
    with (
        replica_reads(),
        CaptureQueriesContext(replica) as on_replica,
        CaptureQueriesContext(primary) as on_primary,
    ):
        assert by_pk.all().db == REPLICA_DB_ALIAS
        assert list(by_pk.values_list("name", flat=True)) == ["Replicated"]
    assert len(on_replica) == 1
    assert 'FROM "accounts_organization"' in on_replica[0]["sql"]
    assert len(on_primary) == 0
    assert replica.connection.info.port == int(replica.settings_dict["PORT"])
    assert _fetch_one(REPLICA_DB_ALIAS, "SELECT pg_is_in_recovery()") == (True,)

    # A decorated generator (a streamed CSV's rows, through a server-side cursor) reads from
    # the replica however late it is iterated; a thread started inside the block is not in it.
    @replica_reads()
    def names():
        yield from by_pk.values_list("name", flat=True).iterator(chunk_size=100)

    rows = names()
    threads_db = []
    with replica_reads():
        thread = threading.Thread(target=lambda: threads_db.append(by_pk.all().db))
        thread.start()
        thread.join()
    with CaptureQueriesContext(replica) as streamed:
        assert list(rows) == ["Replicated"]
    assert len(streamed) == 1
    assert threads_db == [DEFAULT_DB_ALIAS]

    # (b) Outside it: the primary.
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(primary) as on_primary:
        assert by_pk.all().db == DEFAULT_DB_ALIAS
        assert by_pk.get().name == "Replicated"
    assert (len(on_primary), len(on_replica)) == (1, 0)
    assert _fetch_one(DEFAULT_DB_ALIAS, "SELECT pg_is_in_recovery()") == (False,)

    # (c) Writes go to the primary, inside replica_reads() too; the replica refuses them.
    with replica_reads(), CaptureQueriesContext(replica) as on_replica:
        Organization.objects.create(name="Written", slug="written")
    assert len(on_replica) == 0
    assert Organization.objects.filter(slug="written").exists()
    with pytest.raises(InternalError, match="read-only transaction"):
        Organization.objects.using(REPLICA_DB_ALIAS).create(name="Refused", slug="refused")

    # (d) Inside a transaction on the primary, reads stay there: they see its writes.
    with transaction.atomic(), replica_reads():
        Organization.objects.create(name="Uncommitted", slug="uncommitted")
        assert Organization.objects.filter(slug="uncommitted").db == DEFAULT_DB_ALIAS
        assert Organization.objects.filter(slug="uncommitted").exists()


@pytest.mark.django_db(transaction=True)
def test_without_a_replica_server_replica_reads_stay_on_default():
    # The test settings' "replica" is default's own server: the router keeps the reads on
    # default, the only alias this test may use (a live server's test, say).
    organization = OrganizationFactory(name="Primary only", slug="primary-only")
    with replica_reads():
        by_pk = Organization.objects.filter(pk=organization.pk)
        assert by_pk.db == DEFAULT_DB_ALIAS
        assert by_pk.get().name == "Primary only"

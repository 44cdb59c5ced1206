"""Transaction pooling: the consumer through a real PgBouncer (1.18,
pool_mode=transaction) with a pool smaller than its workers, so every
transaction may land on another server session and any session state
(a staging table made at connect, a session advisory lock, a SET) would
show. The rest of the suite runs through one as well with
LJ_TEST_PGBOUNCER=1 (`make test` does so for the store, redelivery,
poison and partition tests)."""
import time
import uuid

import pytest

from conftest import PgBouncer, free_port, wait_for
from test_consumer import BASE_MS, drained, health_entry, metrics_of, rows

PARTITION_LOCK = 7262022


@pytest.fixture(scope="module")
def bouncer(servers):
    # Server sessions replaced every second, as server_lifetime does in
    # production hourly: what a client set up on one is gone on the next.
    b = PgBouncer(servers.tmp, servers.pg_port, pool_size=2, name="pgbouncer-small",
                  server_lifetime=1)
    b.start()
    yield b
    b.stop()


def serial(tag):
    return f"B-{tag}-{uuid.uuid4().hex[:10]}"


def watch_settings(servers, sn_like):
    """A trigger that records, for each health row of 'sn_like', the
    statement and lock timeouts in force and the server session that wrote
    it. Returns (read, drop)."""
    name = f"it_seen_{uuid.uuid4().hex[:6]}"
    servers.sql(f"CREATE TABLE {name} (sn text, st text, lt text, pid int)")
    servers.sql(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.device_sn LIKE '{sn_like}' THEN
                INSERT INTO {name} VALUES (NEW.device_sn, current_setting('statement_timeout'),
                                           current_setting('lock_timeout'), pg_backend_pid());
            END IF;
            RETURN NEW;
        END $$""")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_user_health_data"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")

    def read():
        return servers.sql(f"SELECT sn, st, lt, pid FROM {name}")

    def drop():
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_user_health_data")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")
        servers.sql(f"DROP TABLE IF EXISTS {name}")
    return read, drop


def test_four_workers_through_a_pool_of_two_store_each_reading_once(stack, servers, bouncer):
    tag = uuid.uuid4().hex[:6]
    sns = [serial(f"{tag}{i}") for i in range(4)]
    bad = serial(f"{tag}poison")

    def send_all():
        for i in range(40):
            health_entry(stack, [{"device_sn": sns[i % 4], "ts": BASE_MS + i}])

    read, drop = watch_settings(servers, f"B-{tag}%")
    servers.sql("ALTER TABLE t_user_health_data ADD CONSTRAINT it_bouncer_poison"
                f" CHECK (device_sn <> '{bad}')")
    try:
        port = free_port()
        send_all()
        stack.consumer(LJ_STATUS_PORT=port, LJ_WORKERS=4, LJ_PG_DSN=bouncer.dsn(),
                       LJ_PG_POOLED=1, LJ_PG_STATEMENT_TIMEOUT_MS=7000,
                       LJ_PG_LOCK_TIMEOUT_MS=3000, LJ_BATCH_SIZE=8)
        wait_for(lambda: drained(stack), timeout=60, what="the first readings to drain")
        time.sleep(2.5)     # the server sessions of the first batches are gone
        # Each reading again: a batch holding a reading already stored takes
        # the staging path (its temp table), on server sessions made since.
        send_all()
        refused_id = health_entry(stack, [{"device_sn": bad, "ts": BASE_MS}])
        wait_for(lambda: drained(stack), timeout=60, what="the stream to drain")
        seen = read()
        m = metrics_of(port)
    finally:
        servers.sql("ALTER TABLE t_user_health_data DROP CONSTRAINT it_bouncer_poison")
        drop()
    for i, sn in enumerate(sns):
        assert rows(stack, sn) == [(BASE_MS + k,) for k in range(i, 40, 4)]
    assert rows(stack, bad) == []
    dead = stack.s.redis().xrange(stack.stream() + ":dead")
    assert [e[1]["dead_id"] for e in dead] == [refused_id]
    assert m["ljwx_consumer_dead_lettered_total"] == 1
    # Every transaction ran with our timeouts (SET LOCAL: the pooler takes
    # no startup options), on server sessions that came and went.
    assert seen and {(st, lt) for _, st, lt, _ in seen} == {("7s", "3s")}
    assert len({pid for *_, pid in seen}) >= 2   # server sessions did change
    # The partition upkeep's lock was the transaction's: none is left held.
    wait_for(lambda: metrics_of(port).get("ljwx_consumer_partitions_ahead", -1) >= 3,
             what="the upkeep to count the partitions ahead")
    assert servers.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                       " AND objid = %s", (PARTITION_LOCK,)) == [(0,)]


def test_startup_options_are_refused_by_pgbouncer_unless_pooled(stack, servers, bouncer):
    """Why --pg-pooled exists: PgBouncer refuses the 'options' startup
    parameter that carries our timeouts on a direct connection."""
    sn = serial("opts")
    health_entry(stack, [{"device_sn": sn, "ts": BASE_MS}])
    c = stack.consumer(LJ_PG_DSN=bouncer.dsn(), LJ_PG_POOLED=0)
    wait_for(lambda: "unsupported startup parameter: options" in c.output(),
             what="pgbouncer to refuse the startup options")
    assert rows(stack, sn) == []
    assert c.stop() == 0
    stack.consumer(LJ_PG_DSN=bouncer.dsn(), LJ_PG_POOLED=1)
    wait_for(lambda: drained(stack), what="the stream to drain")
    assert rows(stack, sn) == [(BASE_MS,)]

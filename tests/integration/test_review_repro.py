"""Reviewer repros (branch review): each test asserts the behaviour the
issue/SPEC promises and fails against the current code."""
import threading
import time
import uuid

import psycopg


def tag(name):
    return f"RV{name}{uuid.uuid4().hex[:6]}"


def _late_commit(stack, servers, table, path, body):
    """Holds 'table' locked past the request deadline, then releases it: the
    upload is answered 503, the writer's transaction then commits, and the
    device's retry (as any client does after a 503) is stored again."""
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1000, LJ_PG_LOCK_TIMEOUT_MS=0)
    lock = psycopg.connect(servers.dsn)
    lock.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    try:
        r = stack.post(path, body, timeout=10)
        assert r.status_code == 503, r.text
    finally:
        time.sleep(0.5)
        lock.rollback()
        lock.close()
    time.sleep(1.0)     # the writer's transaction commits now
    r = stack.post(path, body, timeout=10)     # the device retries after the 503
    assert r.status_code == 200, r.text


def test_event_answered_503_is_stored_and_its_retry_stored_again(stack, servers):
    sn = tag("E")
    _late_commit(stack, servers, "t_common_event", "/upload_common_event",
                 {"deviceSn": sn, "eventType": "SOS"})
    n = servers.sql("SELECT count(*) FROM t_common_event WHERE device_sn = %s", (sn,))
    assert n == [(1,)], f"one SOS sent (503 then retried 200), rows stored: {n}"


def test_health_without_timestamp_answered_503_is_stored_twice(stack, servers):
    sn = tag("H")
    _late_commit(stack, servers, "t_user_health_data", "/upload_health_data",
                 {"deviceSn": sn, "heartRate": 71})
    n = servers.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s", (sn,))
    assert n == [(1,)], f"one reading sent (503 then retried 200), rows stored: {n}"


def test_two_groups_with_the_same_events_in_opposite_order_do_not_503(stack, servers):
    """Two legacy writers, each with a group holding the same two events in
    opposite order (a device's retry of an upload still being written): the
    groups deadlock in PostgreSQL (40P01); the loser's uploads -- fine data --
    are answered 503 and count against the breaker, nothing retries them."""
    name = f"slow_{uuid.uuid4().hex[:8]}"
    servers.sql(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload->>'slow' = '1' THEN PERFORM pg_sleep(1.5); END IF;
            RETURN NEW;
        END $$""")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_common_event"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        stack.producer(LJ_LEGACY_GROUP_MS=300, LJ_LEGACY_WRITERS=2,
                       LJ_POOL_REQUEST_TIMEOUT_MS=20000)
        sn = tag("DL")
        e1 = {"deviceSn": sn, "eventType": "SOS", "timestamp": 1_760_000_001}
        e2 = {"deviceSn": sn, "eventType": "FALL_DOWN", "timestamp": 1_760_000_002}
        plan = [(0.0, dict(e1)), (0.05, dict(e2, slow="1")),    # group A: e1, e2 (slow)
                (0.40, dict(e2)), (0.45, dict(e1))]             # group B: e2, e1
        out = [None] * len(plan)
        t0 = time.monotonic()

        def one(i):
            delay, body = plan[i]
            time.sleep(max(0, t0 + delay - time.monotonic()))
            out[i] = stack.post("/upload_common_event", body, timeout=30)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(plan))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        codes = [r.status_code for r in out]
        assert codes == [200] * 4, [(r.status_code, r.text) for r in out]
    finally:
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_common_event")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")

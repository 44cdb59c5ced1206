"""Reviewer repros (branch review): each test asserts the behaviour the
issue/SPEC promises and fails against the current code."""
import threading
import time
import uuid

import psycopg

from conftest import wait_for


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


def test_bare_record_with_an_unknown_devices_key_is_still_accepted(stack):
    """SPEC §2.1: unknown keys are ignored. A bare RECORD carrying a key
    named "devices" (e.g. a paired-devices count) was accepted before the
    {"devices": [...]} shape was added; now it is refused whole."""
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=1000)
    sn = tag("K")
    r = stack.post("/upload_health_data_v2", {"deviceSn": sn, "heartRate": 70,
                                              "timestamp": 1_760_000_000, "devices": 2})
    assert r.status_code == 200, r.text

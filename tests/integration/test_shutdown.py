"""Producer shutdown (issue: item 5): SIGTERM stops accepting, answers every
request in flight (503 once the drain deadline passes), closes idle
keep-alive connections, and frees everything in an order no late callback
can trip over. The ASan build turns a use-after-free into exit code 86."""
import socket
import threading
import time
import uuid

import psycopg
import pytest
import requests

from conftest import metric, wait_for

BASE_S = 1_700_000_000


def alarm_reading(sn, ts):
    # heart rate 150: over the heart_rate_high_major rule, so an alert is
    # written and published to the alert stream after COMMIT.
    return {"deviceSn": sn, "heartRate": 150, "timestamp": ts}


class HealthLock:
    """An open transaction holding ACCESS EXCLUSIVE on the health table: every
    legacy write waits in its INSERT until release()."""

    def __init__(self, servers):
        self.c = psycopg.connect(servers.dsn)
        self.c.execute("LOCK TABLE t_user_health_data IN ACCESS EXCLUSIVE MODE")

    def release(self):
        if not self.c.closed:
            self.c.rollback()
            self.c.close()


def lock_waiters(servers):
    rows = servers.sql("SELECT count(*) FROM pg_stat_activity"
                       " WHERE application_name LIKE 'ljwx-producer%%' AND wait_event_type = 'Lock'")
    return rows[0][0]


def post_all(stack, bodies, timeout=30):
    """Posts each body from its own thread; returns [(status or exception name, seconds)]."""
    results = [None] * len(bodies)

    def one(i):
        t = time.monotonic()
        try:
            r = requests.post(stack.url + "/upload_health_data", json=bodies[i], timeout=timeout)
            results[i] = (r.status_code, time.monotonic() - t, r)
        except requests.RequestException as e:
            results[i] = (type(e).__name__, time.monotonic() - t, None)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    return threads, results


def stored_sns(servers, tag):
    return {r[0] for r in servers.sql("SELECT device_sn FROM t_user_health_data"
                                      " WHERE device_sn LIKE %s", (f"{tag}%",))}


def keepalive_socket(stack):
    s = socket.create_connection(("127.0.0.1", stack.http_port), timeout=5)
    s.sendall(b"GET /api/stream_traffic_ratio HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    return s


def assert_clean_exit(proc, timeout):
    proc.p.wait(timeout)
    out = proc.output()
    assert "AddressSanitizer" not in out and "runtime error" not in out, out[-6000:]
    assert proc.p.returncode == 0, out[-6000:]


def test_sigterm_answers_legacy_writes_in_flight_then_exits_clean(stack, servers):
    producer = stack.producer()
    tag = f"S{uuid.uuid4().hex[:6]}"
    n = 6       # more than the 2 legacy writers: some wait in the queue
    idle = keepalive_socket(stack)
    lock = HealthLock(servers)
    try:
        threads, results = post_all(stack, [alarm_reading(f"{tag}-{i}", BASE_S + i)
                                            for i in range(n)])
        wait_for(lambda: lock_waiters(servers) >= 1 and
                 metric(stack, "ljwx_legacy_inflight") == n,
                 what="legacy writes waiting on the lock")
        producer.p.send_signal(15)
        # No new connections; the idle keep-alive connection is closed.
        wait_for(lambda: _refused(stack), timeout=3, what="the listener to close")
        idle.settimeout(3)
        assert idle.recv(1) == b""
        time.sleep(0.5)
        assert all(r is None for r in results), results
    finally:
        lock.release()
    for t in threads:
        t.join(30)
    statuses = [r[0] for r in results]
    assert statuses == [200] * n, results
    assert all(r[2].headers.get("Connection") == "close" for r in results)
    assert stored_sns(servers, tag) == {f"{tag}-{i}" for i in range(n)}
    assert_clean_exit(producer, 15)
    # Every alert was published before the Redis link went away.
    alerts = servers.redis().xrange(stack.prefix + "alert_stream")
    assert {a[1]["device_sn"] for a in alerts} >= {f"{tag}-{i}" for i in range(n)}


def _refused(stack):
    try:
        socket.create_connection(("127.0.0.1", stack.http_port), timeout=0.5).close()
        return False
    except OSError:
        return True


def test_sigterm_drain_deadline_answers_503_and_exits_clean(stack, servers):
    # The writes under way at the deadline finish first, bounded by the
    # statement timeout here (the lock is held throughout): 503, not stored.
    producer = stack.producer(LJ_SHUTDOWN_TIMEOUT_MS=1000, LJ_PG_STATEMENT_TIMEOUT_MS=1500)
    tag = f"D{uuid.uuid4().hex[:6]}"
    n = 3
    lock = HealthLock(servers)
    try:
        threads, results = post_all(stack, [alarm_reading(f"{tag}-{i}", BASE_S + i)
                                            for i in range(n)])
        wait_for(lambda: lock_waiters(servers) >= 1 and
                 metric(stack, "ljwx_legacy_inflight") == n,
                 what="legacy writes waiting on the lock")
        # A request still arriving at the deadline: its connection is closed.
        partial = socket.create_connection(("127.0.0.1", stack.http_port), timeout=5)
        partial.sendall(b"POST /upload_health_data HTTP/1.1\r\nHost: x\r\nContent-Len")
        # Accepted (else closing the listener resets it): the uploads, it and
        # the /metrics call itself.
        wait_for(lambda: metric(stack, "ljwx_open_connections") >= n + 2,
                 what="the partial request accepted")
        t0 = time.monotonic()
        producer.p.send_signal(15)
        for t in threads:
            t.join(10)
        assert partial.recv(1) == b""
        assert [r[0] for r in results] == [503] * n, results
        assert all("Retry-After" in r[2].headers for r in results)
        assert time.monotonic() - t0 < 3
        # Still holding the lock: the pool's waits were cut short, so the
        # process exits without waiting for PostgreSQL.
        assert_clean_exit(producer, 10)
    finally:
        lock.release()
    time.sleep(0.5)
    assert stored_sns(servers, tag) == set()    # no row for an answer of 503

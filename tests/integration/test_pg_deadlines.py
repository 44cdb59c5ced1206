"""PostgreSQL deadlines (item 7): a hung PostgreSQL (SIGSTOPped: the kernel
still accepts and ACKs, the server answers nothing and enforces no
statement_timeout) must not pin the producer or the consumers. Legacy
uploads get 503 within their deadline, the breaker opens, /api/health
answers fast, the stream path goes on, and the consumer neither acknowledges
nor dead-letters anything until PostgreSQL runs again."""
import os
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import requests

from conftest import metric, reading, wait_for

BASE_S = 1_700_000_000


def pg_pids(servers):
    with open(os.path.join(servers.pg_dir, "data", "postmaster.pid")) as f:
        pm = int(f.readline())
    kids = subprocess.run(["pgrep", "-P", str(pm)], capture_output=True, text=True).stdout
    return pm, [int(k) for k in kids.split()]


class FrozenPg:
    """SIGSTOP on the postmaster and every backend; SIGCONT on exit."""

    def __init__(self, servers):
        self.servers = servers
        self.pids = []

    def __enter__(self):
        pm, _ = pg_pids(self.servers)
        os.kill(pm, signal.SIGSTOP)     # first: it forks no new backend now
        self.pids = [pm]
        _, kids = pg_pids(self.servers)
        for k in kids:
            try:
                os.kill(k, signal.SIGSTOP)
                self.pids.append(k)
            except ProcessLookupError:
                pass
        return self

    def __exit__(self, *exc):
        for p in reversed(self.pids):
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


def timed_post(stack, path, body, timeout=8):
    t = time.monotonic()
    try:
        r = stack.post(path, body, timeout=timeout)
    except requests.RequestException as e:
        return type(e).__name__, time.monotonic() - t
    return r, time.monotonic() - t


def concurrently(fn, args):
    results = [None] * len(args)

    def one(i):
        results[i] = fn(*args[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def group_info(servers, stack):
    groups = servers.redis().xinfo_groups(stack.stream())
    assert len(groups) == 1
    g = groups[0]
    return g["entries-read"] - g["pending"], g["pending"]   # acknowledged, pending


def count_rows(servers, tag):
    return dict(servers.sql("SELECT device_sn, count(*) FROM t_user_health_data"
                            " WHERE device_sn LIKE %s GROUP BY device_sn", (f"{tag}%",)))


PG_FAST = dict(LJ_PG_REPLY_TIMEOUT_MS=2000, LJ_PG_CONNECT_TIMEOUT_S=2,
               LJ_PG_STATEMENT_TIMEOUT_MS=1000)


def test_hung_postgres_answers_503_in_time_and_loses_nothing(stack, servers):
    # One breaker outcome per legacy group: the first failed group opens it.
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1500, LJ_HEALTH_TIMEOUT_MS=1000,
                   LJ_BREAKER_FAILURES=1, LJ_BREAKER_COOLDOWN_MS=1000,
                   LJ_BREAKER_MAX_COOLDOWN_MS=2000, **PG_FAST)
    stack.consumer(**PG_FAST)
    tag = f"H{uuid.uuid4().hex[:6]}"
    # Warm: both paths store, every connection made.
    assert stack.post("/upload_health_data", reading(f"{tag}-L0", BASE_S)).status_code == 200
    assert stack.post("/upload_health_data_v2", reading(f"{tag}-V0", BASE_S)).status_code == 200
    wait_for(lambda: count_rows(servers, f"{tag}-V0"), what="the warm-up row")
    wait_for(lambda: group_info(servers, stack)[1] == 0, what="the warm-up ack")
    acked_before, _ = group_info(servers, stack)
    accepted = {}
    with FrozenPg(servers):
        legacy = concurrently(lambda i: timed_post(stack, "/upload_health_data",
                                                   reading(f"{tag}-L{i}", BASE_S + i)),
                              [(i,) for i in range(1, 7)])
        assert all(not isinstance(r, str) and r.status_code == 503 for r, _ in legacy), legacy
        assert all("Retry-After" in r.headers for r, _ in legacy)
        assert max(t for _, t in legacy) < 4, [t for _, t in legacy]
        # Timeouts are failures for the breaker: it is open, refusals are fast.
        assert metric(stack, "ljwx_breaker_state", '{dependency="postgres"}') == 1
        r, t = timed_post(stack, "/upload_health_data", reading(f"{tag}-L9", BASE_S + 9))
        assert r.status_code == 503 and "circuit open" in r.json()["message"] and t < 0.5
        # /api/health within its own bound, PostgreSQL reported down.
        t0 = time.monotonic()
        h = requests.get(stack.url + "/api/health", timeout=5)
        assert time.monotonic() - t0 < 2.0
        assert h.status_code == 200 and h.json()["postgres"] is False, h.text
        assert h.json()["state"] == "degraded" and h.json()["status"] == "unhealthy"
        # An ops query on the pool gets its 503 at the request deadline too.
        t0 = time.monotonic()
        st = requests.get(stack.url + "/api/stats", timeout=8)
        assert st.status_code == 503 and "Retry-After" in st.headers, st.text
        assert time.monotonic() - t0 < 3
        # The stream path keeps answering 200.
        for i in range(1, 11):
            r, t = timed_post(stack, "/upload_health_data_v2", reading(f"{tag}-V{i}", BASE_S + i))
            assert r.status_code == 200, r.text
            accepted[f"{tag}-V{i}"] = r.json()["stream_id"]
        time.sleep(3)   # the consumer reads, tries to store, times out
        r = servers.redis()
        assert group_info(servers, stack)[0] == acked_before     # nothing acknowledged
        assert r.xlen(stack.stream() + ":dead") == 0               # nothing dead-lettered
    # PostgreSQL runs again: every 200 stored exactly once, every 503 not at all.
    wait_for(lambda: len(count_rows(servers, f"{tag}-V")) == 11, timeout=30,
             what="the stream uploads stored")
    rows = count_rows(servers, tag)
    assert all(rows[sn] == 1 for sn in accepted), rows
    assert {sn for sn in rows if "-L" in sn} == {f"{tag}-L0"}, rows
    wait_for(lambda: group_info(servers, stack)[1] == 0, what="nothing pending")
    assert servers.redis().xlen(stack.stream() + ":dead") == 0
    wait_for(lambda: stack.post("/upload_health_data",
                                reading(f"{tag}-L20", BASE_S + 20)).status_code == 200,
             timeout=15, interval=0.3, what="the legacy path back")
    assert requests.get(stack.url + "/api/health", timeout=5).json()["postgres"] is True


class TableLock:
    def __init__(self, servers, table):
        self.c = psycopg.connect(servers.dsn)
        self.c.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def release(self):
        if not self.c.closed:
            self.c.rollback()
            self.c.close()


def test_legacy_write_under_way_at_its_deadline_is_answered_with_its_commit(stack, servers):
    """A write already being written at its deadline is not answered 503
    (it may still commit, and a retry of a reading without timestamp or of
    a device report would be stored again): it gets its bounded outcome."""
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1000, LJ_PG_LOCK_TIMEOUT_MS=0)
    tag = f"T{uuid.uuid4().hex[:6]}"
    body = reading(f"{tag}-0", BASE_S, hr=150)
    lock = TableLock(servers, "t_user_health_data")
    releaser = threading.Timer(2.0, lock.release)   # past the 1 s deadline
    releaser.start()
    try:
        r, t = timed_post(stack, "/upload_health_data", body)
    finally:
        releaser.join(10)
        lock.release()
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    assert t >= 1.5, t
    assert count_rows(servers, tag) == {f"{tag}-0": 1}
    wait_for(lambda: any(a[1]["device_sn"] == f"{tag}-0" for a in
                         servers.redis().xrange(stack.prefix + "alert_stream")),
             what="the alert")
    r = stack.post("/upload_health_data", body)
    assert r.status_code == 200 and r.json()["duplicates"] == 1, r.text


def test_lock_timeout_fails_a_legacy_write_fast_as_a_postgres_failure(stack, servers):
    stack.producer(LJ_PG_LOCK_TIMEOUT_MS=300, LJ_POOL_REQUEST_TIMEOUT_MS=5000)
    tag = f"K{uuid.uuid4().hex[:6]}"
    lock = TableLock(servers, "t_user_health_data")
    try:
        r, t = timed_post(stack, "/upload_health_data", reading(f"{tag}-0", BASE_S))
        assert r.status_code == 503 and t < 2, (r, t)
    finally:
        lock.release()
    assert count_rows(servers, tag) == {}
    assert "sqlstate=55P03" in stack.procs[0].output()


def stats_waiters(servers):
    return servers.sql("SELECT count(*) FROM pg_stat_activity"
                       " WHERE application_name = 'ljwx-producer' AND wait_event_type = 'Lock'"
                       " AND query LIKE '%%count(DISTINCT%%'")[0][0]


def test_stats_runs_one_query_at_a_time_and_answers_from_its_cache(stack, servers):
    stack.producer(LJ_STATS_CACHE_MS=3000, LJ_POOL_REQUEST_TIMEOUT_MS=8000)
    get = lambda: requests.get(stack.url + "/api/stats", timeout=10)
    lock = TableLock(servers, "t_user_health_data")
    try:
        first = []
        t = threading.Thread(target=lambda: first.append(get()))
        t.start()
        wait_for(lambda: stats_waiters(servers) == 1, what="the stats query waiting")
        t0 = time.monotonic()
        others = concurrently(get, [()] * 6)
        assert time.monotonic() - t0 < 1.5
        assert [r.status_code for r in others] == [503] * 6
        assert all("Retry-After" in r.headers for r in others)
        assert stats_waiters(servers) == 1      # one pool thread, not four
        # The other pool threads are free: /api/health pings at once.
        h = requests.get(stack.url + "/api/health", timeout=5).json()
        assert h["postgres"] is True
    finally:
        lock.release()
    t.join(10)
    assert first[0].status_code == 200, first[0].text
    before = first[0].json()["records_today"]
    servers.sql("INSERT INTO t_user_health_data (device_sn, ts, heart_rate, upload_method)"
                " VALUES (%s, now(), 70, 'optimized')", (f"C{uuid.uuid4().hex[:6]}",))
    again = get()
    assert again.status_code == 200 and again.json()["records_today"] == before  # cached
    time.sleep(3.2)
    assert get().json()["records_today"] == before + 1

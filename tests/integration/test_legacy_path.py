"""The legacy path as a fleet's path (issue 16 part 2): at ratio 0 every routed
upload is written to PostgreSQL synchronously, concurrent uploads gathered
into one transaction (group commit) by the legacy writer threads, each
answered after that COMMIT with its own counts; a poison upload is isolated;
a hung or restarted PostgreSQL gives bounded 503s and recovers; the old
/upload_device_info and /upload_common_event paths are routed like health."""
import concurrent.futures
import json
import os
import signal
import threading
import time
import uuid

import psycopg
import requests

from conftest import metric, reading, wait_for
from test_pg_deadlines import FrozenPg, timed_post

BASE_S = 1_760_000_000


def tag(name):
    return f"LG{name}{uuid.uuid4().hex[:6]}"


def count_rows(servers, like):
    return dict(servers.sql("SELECT device_sn, count(*) FROM t_user_health_data"
                            " WHERE device_sn LIKE %s GROUP BY device_sn", (like,)))


def set_ratio(stack, ratio):
    r = requests.post(stack.url + "/api/stream_traffic_ratio",
                      data=json.dumps({"ratio": ratio}), timeout=5)
    assert r.status_code == 200, r.text
    wait_for(lambda: requests.get(stack.url + "/api/stream_traffic_ratio", timeout=5)
             .json()["current_ratio"] == ratio, what="the ratio")


def post_together(stack, bodies, path="/upload_health_data", workers=None, check=None):
    """Posts every body at once (threads released together); returns the
    responses (or exception names) in order. 'check(i, resp)' runs in the
    posting thread right after its answer."""
    start = threading.Barrier(len(bodies))
    out = [None] * len(bodies)

    def one(i):
        start.wait(10)
        try:
            out[i] = stack.post(path, bodies[i], timeout=20)
        except requests.RequestException as e:
            out[i] = type(e).__name__
            return
        if check:
            check(i, out[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    return out


def poison_trigger(servers, sn):
    """PostgreSQL refuses (SQLSTATE 22023, a data exception) every row of 'sn'."""
    name = f"poison_{uuid.uuid4().hex[:8]}"
    servers.sql(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.device_sn = '{sn}' THEN
                RAISE EXCEPTION 'poison row' USING ERRCODE = '22023';
            END IF;
            RETURN NEW;
        END $$""")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_user_health_data"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")

    def drop():
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_user_health_data")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")
    return drop


# -- group commit --------------------------------------------------------------------------

def test_concurrent_uploads_are_grouped_stored_once_and_answered_after_commit(stack, servers):
    stack.producer(LJ_LEGACY_GROUP_MS=30, LJ_LEGACY_WRITERS=2)
    t = tag("G")
    n = 48
    bodies = [{"data": [reading(f"{t}-{i}", BASE_S + k) for k in range(3)]} for i in range(n)]
    seen = {}

    def visible(i, resp):
        # A 200 is given only after COMMIT: the rows are there the moment it arrives.
        if resp.status_code == 200:
            seen[i] = servers.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                                  (f"{t}-{i}",))[0][0]
    groups_before = metric(stack, "ljwx_legacy_groups_total")
    uploads_before = metric(stack, "ljwx_legacy_uploads_total")
    out = post_together(stack, bodies, check=visible)
    assert [getattr(r, "status_code", r) for r in out] == [200] * n
    for r in out:
        b = r.json()
        assert b["status"] == "success"
        assert (b["inserted"], b["duplicates"], b["accepted"], b["rejected"]) == (3, 0, 3, 0), b
    assert seen == {i: 3 for i in range(n)}
    assert count_rows(servers, f"{t}-%") == {f"{t}-{i}": 3 for i in range(n)}
    groups = metric(stack, "ljwx_legacy_groups_total") - groups_before
    uploads = metric(stack, "ljwx_legacy_uploads_total") - uploads_before
    assert uploads == n
    assert 1 <= groups <= n / 2, (groups, uploads)     # grouped: far fewer transactions
    # The same uploads again, all at once: each is told its own duplicates.
    out = post_together(stack, bodies)
    assert all(r.status_code == 200 and r.json()["inserted"] == 0
               and r.json()["duplicates"] == 3 for r in out), [r.text for r in out]
    assert count_rows(servers, f"{t}-%") == {f"{t}-{i}": 3 for i in range(n)}


def test_counts_are_per_upload_when_a_group_holds_a_duplicate(stack, servers):
    stack.producer(LJ_LEGACY_GROUP_MS=200, LJ_LEGACY_WRITERS=1)
    t = tag("D")
    # Already stored: the second record of every even upload.
    servers.sql("INSERT INTO t_user_health_data (device_sn, ts, heart_rate, upload_method)"
                " SELECT %s || '-' || i, to_timestamp(%s + 1), 70, 'optimized'"
                " FROM generate_series(0, 9, 2) i", (t, BASE_S))
    bodies = [{"data": [reading(f"{t}-{i}", BASE_S + k) for k in range(2)]} for i in range(10)]
    out = post_together(stack, bodies)
    got = [(r.json()["inserted"], r.json()["duplicates"]) for r in out]
    assert got == [(1, 1) if i % 2 == 0 else (2, 0) for i in range(10)], got
    assert count_rows(servers, f"{t}-%") == {f"{t}-{i}": 2 for i in range(10)}
    # The same new reading in several uploads of one group: stored once,
    # counted new for one of them, a duplicate for the others.
    same = [{"data": [reading(f"{t}-same", BASE_S + 5), reading(f"{t}-own{i}", BASE_S)]}
            for i in range(4)]
    out = post_together(stack, same)
    got = sorted((r.json()["inserted"], r.json()["duplicates"]) for r in out)
    assert got == [(1, 1), (1, 1), (1, 1), (2, 0)], got
    assert count_rows(servers, f"{t}-same") == {f"{t}-same": 1}


def test_a_poison_upload_gets_400_and_the_rest_of_its_group_is_stored(stack, servers):
    t = tag("P")
    bad = f"{t}-bad"
    drop = poison_trigger(servers, bad)
    try:
        stack.producer(LJ_LEGACY_GROUP_MS=200, LJ_LEGACY_WRITERS=1)
        bodies = [reading(f"{t}-{i}", BASE_S) for i in range(15)]
        bodies.insert(7, reading(bad, BASE_S))
        groups_before = metric(stack, "ljwx_legacy_groups_total")
        txns_before = metric(stack, "ljwx_legacy_transactions_total")
        out = post_together(stack, bodies)
        codes = [getattr(r, "status_code", r) for r in out]
        assert codes == [200] * 7 + [400] + [200] * 8, codes
        assert "refused" in out[7].json()["message"]
        assert all(r.json()["inserted"] == 1 for i, r in enumerate(out) if i != 7)
        assert count_rows(servers, f"{t}-%") == {f"{t}-{i}": 1 for i in range(15)}
        # They were one group (or few), not sixteen transactions.
        groups = metric(stack, "ljwx_legacy_groups_total") - groups_before
        assert groups <= 4, groups
        # ... split to isolate the refused upload: more transactions than groups.
        assert metric(stack, "ljwx_legacy_transactions_total") - txns_before > groups
        assert metric(stack, "ljwx_legacy_poison_total") >= 1
    finally:
        drop()


# -- bounded waits ------------------------------------------------------------------------------

PG_FAST = dict(LJ_PG_REPLY_TIMEOUT_MS=2000, LJ_PG_CONNECT_TIMEOUT_S=2,
               LJ_PG_STATEMENT_TIMEOUT_MS=1000)


def test_hung_postgres_gives_bounded_503s_opens_the_breaker_and_recovers(stack, servers):
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1500, LJ_LEGACY_QUEUE=8, LJ_BREAKER_FAILURES=3,
                   LJ_BREAKER_COOLDOWN_MS=1000, LJ_BREAKER_MAX_COOLDOWN_MS=2000, **PG_FAST)
    t = tag("H")
    assert stack.post("/upload_health_data", reading(f"{t}-w", BASE_S)).status_code == 200
    with FrozenPg(servers):
        bodies = [reading(f"{t}-{i}", BASE_S) for i in range(40)]
        t0 = time.monotonic()
        out = post_together(stack, bodies)
        took = time.monotonic() - t0
        codes = [getattr(r, "status_code", r) for r in out]
        assert codes == [503] * 40, codes
        assert all("Retry-After" in r.headers for r in out)
        assert took < 6, took
        # Bounded: never more queued than the cap, nothing piles up.
        assert metric(stack, "ljwx_legacy_queue_peak") <= 8
        assert metric(stack, "ljwx_legacy_queue_full_total") >= 1
        assert metric(stack, "ljwx_breaker_state", '{dependency="postgres"}') == 1
        r, dt = timed_post(stack, "/upload_health_data", reading(f"{t}-x", BASE_S))
        assert r.status_code == 503 and "Retry-After" in r.headers and dt < 0.5
        # The old device and event paths share the writers and the breaker.
        for path, body in (("/upload_device_info", {"SerialNumber": f"{t}-d"}),
                           ("/upload_common_event", {"deviceSn": f"{t}-d", "eventType": "SOS"})):
            r, dt = timed_post(stack, path, body)
            assert r.status_code == 503 and "circuit open" in r.json()["message"], r.text
            assert "Retry-After" in r.headers and dt < 0.5
        assert metric(stack, "ljwx_legacy_queued") <= 8
    wait_for(lambda: stack.post("/upload_health_data",
                                reading(f"{t}-back", BASE_S)).status_code == 200,
             timeout=20, interval=0.3, what="the legacy path back")
    # Queued uploads past their deadline were never written; the warm-up was.
    rows = count_rows(servers, f"{t}-%")
    assert rows.get(f"{t}-w") == 1 and rows.get(f"{t}-back") == 1
    assert all(v == 1 for v in rows.values()), rows
    wait_for(lambda: metric(stack, "ljwx_legacy_queued") == 0, what="the queue empty")


def test_postgres_restart_recovers_by_itself(stack, servers):
    stack.producer(LJ_BREAKER_FAILURES=2, LJ_BREAKER_COOLDOWN_MS=200,
                   LJ_BREAKER_MAX_COOLDOWN_MS=500, **PG_FAST)
    t = tag("R")
    assert stack.post("/upload_health_data", reading(f"{t}-0", BASE_S)).status_code == 200
    servers.stop_pg()
    try:
        r = stack.post("/upload_health_data", reading(f"{t}-1", BASE_S))
        assert r.status_code == 503 and "Retry-After" in r.headers
        r = stack.post("/upload_common_event", {"deviceSn": f"{t}-e", "eventType": "SOS"})
        assert r.status_code == 503 and "Retry-After" in r.headers
    finally:
        servers.start_pg()
    wait_for(lambda: stack.post("/upload_health_data",
                                reading(f"{t}-2", BASE_S)).status_code == 200,
             timeout=20, interval=0.3, what="the legacy path back")
    assert count_rows(servers, f"{t}-%") == {f"{t}-0": 1, f"{t}-2": 1}


def test_shutdown_answers_every_queued_legacy_upload(stack, servers):
    proc = stack.producer(LJ_SHUTDOWN_TIMEOUT_MS=1000, LJ_POOL_REQUEST_TIMEOUT_MS=20000,
                          LJ_PG_LOCK_TIMEOUT_MS=0)
    t = tag("S")
    lock = psycopg.connect(servers.dsn)
    lock.execute("LOCK TABLE t_user_health_data IN ACCESS EXCLUSIVE MODE")
    out = []
    try:
        threads = [threading.Thread(target=lambda i=i: out.append(
            timed_post(stack, "/upload_health_data", reading(f"{t}-{i}", BASE_S), timeout=15)))
            for i in range(12)]
        for th in threads:
            th.start()
        wait_for(lambda: metric(stack, "ljwx_legacy_inflight") == 12, what="twelve waiting")
        proc.p.send_signal(signal.SIGTERM)
        for th in threads:
            th.join(20)
    finally:
        lock.rollback()
        lock.close()
    assert proc.p.wait(20) == 0, proc.output()[-3000:]
    assert len(out) == 12
    assert all(not isinstance(r, str) and r.status_code == 503 and "Retry-After" in r.headers
               for r, _ in out), out
    assert max(dt for _, dt in out) < 6


# -- the old device and event paths ------------------------------------------------------

def test_old_device_and_event_paths_at_ratio_0_store_synchronously(stack, servers):
    stack.producer()
    sn = tag("E")
    r = stack.post("/upload_device_info", {"SerialNumber": sn, "batteryLevel": 41,
                                           "wearState": "on", "network": "4g"})
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    # Stored before the answer, no stream entry.
    assert servers.sql("SELECT battery_level, wear_state, info->>'network' FROM t_device_info"
                       " WHERE device_sn = %s", (sn,)) == [(41, "on", "4g")]
    hist = servers.sql("SELECT stream, stream_id FROM t_device_info_history"
                       " WHERE device_sn = %s", (sn,))
    assert len(hist) == 1 and hist[0][0] == "legacy" and len(hist[0][1]) == 36, hist
    r = stack.post("/upload_common_event", {"deviceSn": sn, "eventType": "SOS",
                                            "timestamp": BASE_S})
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    assert r.json()["inserted"] == 1
    assert servers.sql("SELECT event_type FROM t_common_event WHERE device_sn = %s",
                       (sn,)) == [("SOS",)]
    assert servers.sql("SELECT level FROM t_alert_info WHERE device_sn = %s"
                       " AND alert_type = 'SOS'", (sn,)) == [("critical",)]
    wait_for(lambda: any(a[1]["device_sn"] == sn for a in
                         servers.redis().xrange(stack.prefix + "alert_stream")),
             what="the SOS alert published")
    # The same event again: a duplicate, stored once.
    r = stack.post("/upload_common_event", {"deviceSn": sn, "eventType": "SOS",
                                            "timestamp": BASE_S})
    assert r.status_code == 200 and r.json()["duplicates"] == 1, r.text
    r = servers.redis()
    assert r.exists(stack.stream("device_info_stream")) == 0
    assert r.exists(stack.stream("common_event_stream")) == 0
    # Bad bodies: 400, nothing stored.
    assert stack.post("/upload_device_info", {"batteryLevel": 5}).status_code == 400
    assert stack.post("/upload_common_event", {"deviceSn": sn}).status_code == 400
    assert stack.post("/upload_common_event", b"{nope").status_code == 400
    assert servers.sql("SELECT count(*) FROM t_common_event WHERE device_sn = %s",
                       (sn,)) == [(1,)]
    assert stack.get("/upload_device_info").status_code == 405


def test_old_device_and_event_paths_at_ratio_1_take_the_stream(stack, servers):
    stack.producer()
    set_ratio(stack, 1)
    sn = tag("F")
    r = stack.post("/upload_device_info", {"SerialNumber": sn, "batteryLevel": 7})
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["stream_id"]
    r2 = stack.post("/upload_common_event", {"deviceSn": sn, "eventType": "FALL_DOWN"})
    assert r2.status_code == 200 and r2.json()["status"] == "accepted", r2.text
    red = servers.redis()
    assert [e[0] for e in red.xrange(stack.stream("device_info_stream"))] == [r.json()["stream_id"]]
    assert [e[0] for e in red.xrange(stack.stream("common_event_stream"))] == \
        [r2.json()["stream_id"]]
    assert servers.sql("SELECT count(*) FROM t_device_info WHERE device_sn = %s", (sn,)) == [(0,)]
    assert stack.post("/upload_device_info", {"batteryLevel": 5}).status_code == 400
    assert metric(stack, "ljwx_http_requests_total",
                  '{path="/upload_device_info",status="2xx"}') == 1
    assert metric(stack, "ljwx_http_requests_total",
                  '{path="/upload_common_event",status="2xx"}') == 1


def test_old_device_and_event_paths_fall_back_to_legacy_when_the_stream_is_full(stack, servers):
    # Nothing drains the streams and their high watermark is 1.
    stack.producer(LJ_STREAM_HIGH_WATERMARK=1, LJ_RATIO_REFRESH_MS=50)
    set_ratio(stack, 1)
    sn = tag("B")
    first = stack.post("/upload_device_info", {"SerialNumber": sn, "batteryLevel": 9})
    assert first.status_code == 200 and first.json()["status"] == "accepted", first.text
    red = servers.redis()
    wait_for(lambda: red.xlen(stack.stream("device_info_stream")) == 1, what="one entry")
    fallbacks = metric(stack, "ljwx_fallbacks_total")

    def fell_back():
        r = stack.post("/upload_device_info", {"SerialNumber": sn, "batteryLevel": 8})
        assert r.status_code == 200, r.text
        return r.json()["status"] == "success"
    wait_for(fell_back, timeout=5, what="the legacy path taking over")
    assert servers.sql("SELECT battery_level FROM t_device_info WHERE device_sn = %s",
                       (sn,)) == [(8,)]
    assert metric(stack, "ljwx_fallbacks_total") > fallbacks
    # An event the same way (its stream is empty: fill it first).
    red.xadd(stack.stream("common_event_stream"), {"x": "1"})

    def event_fell_back():
        r = stack.post("/upload_common_event", {"deviceSn": sn, "eventType": "LOW_BATTERY",
                                                "timestamp": BASE_S + 1})
        assert r.status_code == 200, r.text
        return r.json()["status"] == "success"
    wait_for(event_fell_back, timeout=5, what="the event stored by the legacy path")
    assert servers.sql("SELECT event_type FROM t_common_event WHERE device_sn = %s",
                       (sn,)) == [("LOW_BATTERY",)]


def test_old_paths_refused_report_gets_400_and_device_limit_429(stack, servers):
    sn = tag("X")
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    servers.sql(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.device_sn = '{sn}-bad' THEN
                RAISE EXCEPTION 'poison event' USING ERRCODE = '22023';
            END IF;
            RETURN NEW;
        END $$""")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_common_event"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        stack.producer(LJ_DEVICE_RATE=1, LJ_DEVICE_BURST=1, LJ_LEGACY_GROUP_MS=200)
        out = post_together(stack, [{"deviceSn": f"{sn}-{i}", "eventType": "SOS"}
                                    for i in range(3)] +
                            [{"deviceSn": f"{sn}-bad", "eventType": "SOS"}],
                            path="/upload_common_event")
        assert [r.status_code for r in out] == [200, 200, 200, 400], [r.text for r in out]
        assert "refused" in out[3].json()["message"]
        assert servers.sql("SELECT count(*) FROM t_common_event WHERE device_sn LIKE %s",
                           (f"{sn}-%",)) == [(3,)]
        r = stack.post("/upload_common_event", {"deviceSn": f"{sn}-0", "eventType": "FALL_DOWN"})
        assert r.status_code == 429 and "Retry-After" in r.headers, r.text
        r = stack.post("/upload_device_info", {"SerialNumber": f"{sn}-1"})
        assert r.status_code == 429, r.text
    finally:
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_common_event")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")

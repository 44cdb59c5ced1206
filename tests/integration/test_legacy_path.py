"""The legacy path as a fleet's path (issue 16 part 2): at ratio 0 every routed
upload is written to PostgreSQL synchronously, concurrent uploads gathered
into one transaction (group commit) by the legacy writer threads, each
answered after that COMMIT with its own counts; a poison upload is isolated;
a hung or restarted PostgreSQL gives bounded 503s and recovers; the old
/upload_device_info and /upload_common_event paths are routed like health."""
import json
import signal
import threading
import time
import uuid

import psycopg
import requests

from conftest import failing_trigger, metric, reading, wait_for
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


def post_on_schedule(stack, path, plan):
    """Posts each (delay_s, body) of 'plan' at its delay from now, each on
    its own thread; returns the responses in plan order."""
    out = [None] * len(plan)
    t0 = time.monotonic()

    def one(i):
        delay, body = plan[i]
        time.sleep(max(0, t0 + delay - time.monotonic()))
        out[i] = stack.post(path, body, timeout=30)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(plan))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    return out


def poison_trigger(servers, sn):
    """PostgreSQL refuses (SQLSTATE 22023, a data exception) every row of 'sn'."""
    return failing_trigger(servers, "22023", sn)


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
    # One breaker outcome per group (the uploads of a group share its fate):
    # the first failed group opens it.
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1500, LJ_LEGACY_QUEUE=8, LJ_BREAKER_FAILURES=1,
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


def test_shutdown_answers_every_queued_legacy_upload_and_stores_none_answered_503(
        stack, servers):
    """At the drain deadline the queued uploads get 503 and are never
    written; the groups being written finish first (here: the lock goes
    after the deadline, so they commit) and are answered with their outcome.
    Nothing answered anything but 200 is stored."""
    proc = stack.producer(LJ_SHUTDOWN_TIMEOUT_MS=1000, LJ_POOL_REQUEST_TIMEOUT_MS=20000,
                          LJ_PG_LOCK_TIMEOUT_MS=0, LJ_LEGACY_GROUP_UPLOADS=2)
    t = tag("S")
    lock = psycopg.connect(servers.dsn)
    lock.execute("LOCK TABLE t_user_health_data IN ACCESS EXCLUSIVE MODE")
    out = []
    try:
        threads = [threading.Thread(target=lambda i=i: out.append((i,) + timed_post(
            stack, "/upload_health_data", reading(f"{t}-{i}", BASE_S), timeout=15)))
            for i in range(12)]
        for th in threads:
            th.start()
        wait_for(lambda: metric(stack, "ljwx_legacy_inflight") == 12, what="twelve waiting")
        proc.p.send_signal(signal.SIGTERM)
        time.sleep(2.0)     # past the drain deadline: the queued ones are answered
        assert sum(1 for o in out if getattr(o[1], "status_code", None) == 503) >= 8, out
    finally:
        lock.rollback()
        lock.close()
    for th in threads:
        th.join(20)
    assert proc.p.wait(20) == 0, proc.output()[-3000:]
    assert len(out) == 12
    assert all(not isinstance(r, str) and r.status_code in (200, 503) for _, r, _ in out), out
    assert all("Retry-After" in r.headers for _, r, _ in out if r.status_code == 503)
    ok = {f"{t}-{i}" for i, r, _ in out if r.status_code == 200}
    assert 1 <= len(ok) <= 4, out      # the groups being written (2 writers x 2)
    assert max(dt for _, _, dt in out) < 8
    time.sleep(0.5)
    assert set(count_rows(servers, f"{t}-%")) == ok


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


# -- deadlines, conflicts and the breaker (review findings 1, 2, 8, 9, 13) ----------------

def event_trigger(servers, body):
    """A BEFORE INSERT trigger on t_common_event running 'body' (plpgsql);
    returns the function that drops it."""
    name = f"trg_{uuid.uuid4().hex[:8]}"
    servers.sql(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN {body} RETURN NEW; END $$")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_common_event"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")

    def drop():
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_common_event")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")
    return drop


def locked_for(servers, table, seconds):
    """Holds ACCESS EXCLUSIVE on 'table' for 'seconds' (from a thread)."""
    lock = psycopg.connect(servers.dsn)
    lock.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def release():
        time.sleep(seconds)
        lock.rollback()
        lock.close()
    th = threading.Thread(target=release)
    th.start()
    return th


def _written_past_deadline(stack, servers, table, path, body, where):
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1000, LJ_PG_LOCK_TIMEOUT_MS=0)
    th = locked_for(servers, table, 2.0)    # the write is under way at its deadline (1 s)
    try:
        r = stack.post(path, body, timeout=15)
    finally:
        th.join(10)
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    assert servers.sql(f"SELECT count(*) FROM {table} WHERE {where}") == [(1,)]


def test_event_being_written_at_its_deadline_is_answered_with_its_commit(stack, servers):
    sn = tag("WE")
    _written_past_deadline(stack, servers, "t_common_event", "/upload_common_event",
                           {"deviceSn": sn, "eventType": "SOS"}, f"device_sn = '{sn}'")


def test_reading_without_timestamp_being_written_at_its_deadline_is_answered_200(stack, servers):
    sn = tag("WH")
    _written_past_deadline(stack, servers, "t_user_health_data", "/upload_health_data",
                           {"deviceSn": sn, "heartRate": 71}, f"device_sn = '{sn}'")


def test_upload_still_queued_at_its_deadline_gets_503_and_is_never_written(stack, servers):
    stack.producer(LJ_POOL_REQUEST_TIMEOUT_MS=1000, LJ_PG_LOCK_TIMEOUT_MS=0,
                   LJ_LEGACY_WRITERS=1)
    sn = tag("Q")
    th = locked_for(servers, "t_common_event", 2.5)
    out = {}

    def first():
        out["a"] = stack.post("/upload_common_event", {"deviceSn": f"{sn}-a", "eventType": "SOS"},
                              timeout=15)
    t1 = threading.Thread(target=first)
    t1.start()
    wait_for(lambda: metric(stack, "ljwx_legacy_inflight") == 1 and
             metric(stack, "ljwx_legacy_queued") == 0, what="the first upload being written")
    r = stack.post("/upload_common_event", {"deviceSn": f"{sn}-b", "eventType": "SOS"},
                   timeout=15)
    assert r.status_code == 503 and "Retry-After" in r.headers, r.text
    t1.join(15)
    th.join(10)
    assert out["a"].status_code == 200, out["a"].text
    time.sleep(0.5)
    assert servers.sql("SELECT device_sn FROM t_common_event WHERE device_sn LIKE %s",
                       (f"{sn}%",)) == [(f"{sn}-a",)]
    assert metric(stack, "ljwx_legacy_expired_total") == 1


def test_two_groups_with_the_same_events_in_opposite_order_are_both_answered_200(stack, servers):
    """Two writers, each with a group holding the same two events in opposite
    order (a device's retry of an upload still being written): rows are
    written in key order, so the second group waits instead of deadlocking."""
    drop = event_trigger(servers, "IF NEW.payload->>'slow' = '1' THEN PERFORM pg_sleep(1.5);"
                                  " END IF;")
    try:
        stack.producer(LJ_LEGACY_GROUP_MS=300, LJ_LEGACY_WRITERS=2,
                       LJ_POOL_REQUEST_TIMEOUT_MS=20000)
        sn = tag("DL")
        e1 = {"deviceSn": sn, "eventType": "SOS", "timestamp": 1_760_000_001}
        e2 = {"deviceSn": sn, "eventType": "FALL_DOWN", "timestamp": 1_760_000_002}
        plan = [(0.0, dict(e1)), (0.05, dict(e2, slow="1")),    # group A: e1, e2 (slow)
                (0.40, dict(e2)), (0.45, dict(e1))]             # group B: e2, e1
        out = post_on_schedule(stack, "/upload_common_event", plan)
        assert [r.status_code for r in out] == [200] * 4, [(r.status_code, r.text) for r in out]
        assert sum(r.json()["inserted"] for r in out) == 2
        assert servers.sql("SELECT count(*) FROM t_common_event WHERE device_sn = %s",
                           (sn,)) == [(2,)]
    finally:
        drop()


def test_a_failed_group_counts_once_against_the_breaker(stack, servers):
    """Six uploads in one group that PostgreSQL fails (not a refusal of the
    data): one breaker outcome, not six, so the breaker (5 failures) stays
    closed for the rest of the fleet."""
    drop = event_trigger(servers, "IF NEW.payload->>'fail' = '1' THEN"
                                  " RAISE EXCEPTION 'boom' USING ERRCODE = 'P0001'; END IF;")
    try:
        stack.producer(LJ_LEGACY_GROUP_MS=500, LJ_LEGACY_WRITERS=1, LJ_BREAKER_FAILURES=5)
        sn = tag("BR")
        bodies = [{"deviceSn": f"{sn}-{i}", "eventType": "SOS", "fail": "1"} for i in range(6)]
        out = post_together(stack, bodies, path="/upload_common_event")
        assert [getattr(r, "status_code", r) for r in out] == [503] * 6, out
        assert metric(stack, "ljwx_legacy_groups_total") <= 2
        assert metric(stack, "ljwx_breaker_state", '{dependency="postgres"}') == 0
        r = stack.post("/upload_common_event", {"deviceSn": f"{sn}-ok", "eventType": "SOS"})
        assert r.status_code == 200, r.text
    finally:
        drop()


def test_a_group_waits_for_uploads_of_its_own_kind(stack, servers):
    """An event queued behind a health upload does not close the health
    upload's group (the group takes only one kind)."""
    stack.producer(LJ_LEGACY_GROUP_MS=1000, LJ_LEGACY_GROUP_UPLOADS=2, LJ_LEGACY_WRITERS=1)
    sn = tag("MX")
    plan = [(0.0, "/upload_health_data", reading(f"{sn}-h1", BASE_S)),
            (0.15, "/upload_common_event", {"deviceSn": f"{sn}-e", "eventType": "SOS"}),
            (0.35, "/upload_health_data", reading(f"{sn}-h2", BASE_S))]
    out = [None] * len(plan)
    t0 = time.monotonic()

    def one(i):
        delay, path, body = plan[i]
        time.sleep(max(0, t0 + delay - time.monotonic()))
        out[i] = stack.post(path, body, timeout=15)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(plan))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert [r.status_code for r in out] == [200] * 3, [r.text for r in out]
    # {h1, h2} and {e}: not {h1}, {e}, {h2}.
    assert metric(stack, "ljwx_legacy_groups_total") == 2
    assert metric(stack, "ljwx_legacy_uploads_total") == 3


def test_old_path_xadd_with_unknown_outcome_gets_503_not_the_legacy_path(stack, servers):
    """The link to Redis times out with the XADD sent (it may be stored): a
    device report must not be stored again by the legacy path (a new
    history ID); the client gets 503 and retries."""
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=1000, LJ_REDIS_TIMEOUT_MS=300)
    sn = tag("AX")
    red = servers.redis()
    red.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
    r = stack.post("/upload_device_info", {"SerialNumber": sn, "batteryLevel": 40}, timeout=10)
    assert r.status_code == 503 and "Retry-After" in r.headers, r.text
    assert servers.sql("SELECT count(*) FROM t_device_info_history WHERE device_sn = %s"
                       " AND stream = 'legacy'", (sn,)) == [(0,)]
    time.sleep(1.5)     # the pause over: a definite refusal still falls back (tested above)


def test_a_group_postgres_aborts_as_a_conflict_is_tried_again(stack, servers):
    """SQLSTATE 40001 (serialization failure) on the first try: the group is
    tried again and its upload answered 200, stored once."""
    seq = f"once_{uuid.uuid4().hex[:8]}"
    servers.sql(f"CREATE SEQUENCE {seq}")
    drop = event_trigger(servers, f"IF NEW.payload->>'conflict' = '1' AND nextval('{seq}') = 1"
                                  " THEN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001';"
                                  " END IF;")
    try:
        stack.producer()
        sn = tag("CF")
        r = stack.post("/upload_common_event", {"deviceSn": sn, "eventType": "SOS",
                                                "conflict": "1"})
        assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
        assert servers.sql("SELECT count(*) FROM t_common_event WHERE device_sn = %s",
                           (sn,)) == [(1,)]
        assert metric(stack, "ljwx_legacy_conflicts_total") == 1
        assert metric(stack, "ljwx_legacy_transactions_total") == 2
    finally:
        drop()
        servers.sql(f"DROP SEQUENCE IF EXISTS {seq}")


def test_two_groups_with_the_same_readings_in_opposite_order_are_both_answered_200(
        stack, servers):
    """As for events: health rows are sent in key order, so the second group
    waits for the first (then skips its rows as duplicates)."""
    name = f"slow_{uuid.uuid4().hex[:8]}"
    servers.sql(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN IF NEW.heart_rate = 99 THEN PERFORM pg_sleep(1.5); END IF;"
                f" RETURN NEW; END $$")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_user_health_data"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        stack.producer(LJ_LEGACY_GROUP_MS=300, LJ_LEGACY_WRITERS=2,
                       LJ_POOL_REQUEST_TIMEOUT_MS=20000)
        sn = tag("DH")
        r1 = {"deviceSn": sn, "heartRate": 70, "timestamp": BASE_S + 1}
        r2 = {"deviceSn": sn, "heartRate": 99, "timestamp": BASE_S + 2}
        r2b = dict(r2, heartRate=98)    # the same key, not slow
        plan = [(0.0, r1), (0.05, r2),          # group A: r1, r2 (slow)
                (0.40, r2b), (0.45, r1)]        # group B: r2, r1
        out = post_on_schedule(stack, "/upload_health_data", plan)
        assert [r.status_code for r in out] == [200] * 4, [(r.status_code, r.text) for r in out]
        assert sum(r.json()["inserted"] for r in out) == 2
        assert count_rows(servers, sn) == {sn: 2}
    finally:
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_user_health_data")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")

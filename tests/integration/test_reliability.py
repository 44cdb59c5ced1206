"""The promise under ordinary faults (issue 15): an upload answered 200 is
stored exactly once, whatever PostgreSQL, clients or restarts do. Each test
injects one fault against real servers and then checks, besides the rows,
the conservation identity of docs/reliability.md:

    entries added = stored + duplicate + dead + gone + pending + lag
"""
import json
import signal
import socket
import threading
import time
import uuid

import psycopg
import pytest
import redis
import requests

from conftest import failing_trigger, machine_key, wait_for

BASE_MS = 1_760_000_000_000     # 2025-10-09


def serial(tag):
    return f"R-{tag}-{uuid.uuid4().hex[:10]}"


def rows(stack, sn_like):
    return stack.s.sql("SELECT device_sn, (extract(epoch FROM ts) * 1000000)::bigint, count(*)"
                       " FROM t_user_health_data WHERE device_sn LIKE %s GROUP BY 1, 2",
                       (sn_like,))


def conservation(stack, kind="health_data_stream", group="health_processors"):
    """The terms of the identity, read straight from Redis."""
    r = stack.s.redis()
    stream = stack.prefix + kind
    raw = redis.Redis(host="127.0.0.1", port=stack.s.redis_port)    # entries may not be UTF-8
    added = raw.xinfo_stream(stream)["entries-added"]
    counts = {k: int(v) for k, v in r.hgetall(stream + ":counts").items()}
    g = [g for g in r.xinfo_groups(stream) if g["name"] == stack.prefix + group][0]
    return {"added": added, "stored": counts.get("stored", 0),
            "duplicate": counts.get("duplicate", 0), "dead": counts.get("dead", 0),
            "gone": counts.get("gone", 0), "pending": g["pending"], "lag": g["lag"] or 0}


def assert_conserved(stack, **kw):
    c = conservation(stack, **kw)
    rhs = c["stored"] + c["duplicate"] + c["dead"] + c["gone"] + c["pending"] + c["lag"]
    assert c["added"] == rhs, c
    return c


def drained(stack, kind="health_data_stream", group="health_processors"):
    try:
        c = conservation(stack, kind, group)
    except (IndexError, redis.exceptions.ResponseError):
        return False    # no stream or no group yet
    return c["pending"] == 0 and c["lag"] == 0


def dead_letters(stack, kind="health_data_stream"):
    return stack.s.redis().xrange(stack.prefix + kind + ":dead")


def post_all(stack, path, bodies):
    """Posts each body; returns the statuses."""
    out = []
    with requests.Session() as s:
        for b in bodies:
            out.append(s.post(stack.url + path, data=json.dumps(b), timeout=10).status_code)
    return out


# -- 1. a retryable PostgreSQL error is an outage, never poison -------------------------

# The two of the report last 10 s; deadlock, statement timeout and disk full 3 s.
@pytest.mark.parametrize("sqlstate,seconds", [("40001", 10), ("25006", 10), ("40P01", 3),
                                              ("57014", 3), ("53100", 3)])
def test_retryable_postgres_error_dead_letters_nothing(stack, servers, sqlstate, seconds):
    tag = serial(f"retry{sqlstate}")
    drop = failing_trigger(servers, sqlstate, tag + "%")
    try:
        stack.producer()
        stack.consumer(LJ_BATCH_SIZE=10, LJ_MAX_DELIVERIES=5, LJ_CLAIM_IDLE_MS=1000,
                       LJ_UPKEEP_INTERVAL_MS=200)
        bodies = [{"deviceSn": f"{tag}-{i % 5}", "heartRate": 70, "timestamp": BASE_MS + i}
                  for i in range(30)]
        assert post_all(stack, "/upload_health_data_v2", bodies) == [200] * 30
        time.sleep(seconds)     # the fault lasts; the worker retries all along
        assert rows(stack, tag + "%") == []
        assert dead_letters(stack) == []
    finally:
        drop()
    wait_for(lambda: drained(stack) and len(rows(stack, tag + "%")) == 30, timeout=30,
             what="every upload stored after the fault")
    assert all(n == 1 for _, _, n in rows(stack, tag + "%"))
    assert dead_letters(stack) == []
    c = assert_conserved(stack)
    assert c["stored"] + c["duplicate"] == 30 and c["dead"] == 0


def waiting_on_lock(stack, pid):
    """The worker of process 'pid' waits on a table lock (application_name
    is its consumer name)."""
    return stack.s.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                       " AND application_name LIKE %s", (f"%:{pid}:%",))[0][0] > 0


def test_consumer_sigkilled_ten_times_holding_one_valid_batch_dead_letters_nothing(stack,
                                                                                     servers):
    sn = serial("kill10")
    n = 20
    stack.producer()
    bodies = [{"deviceSn": sn, "heartRate": 70, "timestamp": BASE_MS + i} for i in range(n)]
    assert post_all(stack, "/upload_health_data_v2", bodies) == [200] * n
    locker = psycopg.connect(servers.dsn)
    locker.execute("LOCK TABLE t_user_health_data IN EXCLUSIVE MODE")
    try:
        for _ in range(10):
            c = stack.consumer(LJ_BATCH_SIZE=50, LJ_MAX_DELIVERIES=5)
            wait_for(lambda: waiting_on_lock(stack, c.p.pid), timeout=20,
                     what="the batch to wait on the table lock")
            c.p.send_signal(signal.SIGKILL)
            c.p.wait()
            stack.procs.remove(c)   # killed on purpose: no clean exit to check
        deliveries = max(p["times_delivered"] for p in stack.s.redis().xpending_range(
            stack.stream(), stack.prefix + "health_processors", "-", "+", 100))
        assert deliveries > 5       # Redis's own counter would have dead-lettered them
    finally:
        locker.rollback()
        locker.close()
    stack.consumer(LJ_BATCH_SIZE=50, LJ_MAX_DELIVERIES=5)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == n, timeout=30,
             what="the held batch to be stored")
    assert all(k == 1 for _, _, k in rows(stack, sn))
    assert dead_letters(stack) == []
    c = assert_conserved(stack)
    assert c["dead"] == 0 and c["stored"] + c["duplicate"] == n


def test_entry_that_crashes_the_worker_each_time_is_dead_lettered_alone(stack):
    bad = serial("crash")
    good = serial("fine")
    stack.producer()
    bodies = [{"deviceSn": good, "heartRate": 70, "timestamp": BASE_MS + i} for i in range(6)]
    bodies.insert(3, {"deviceSn": bad, "heartRate": 71, "timestamp": BASE_MS})
    assert post_all(stack, "/upload_health_data_v2", bodies) == [200] * 7
    crashes = 0
    deadline = time.monotonic() + 90
    while not drained(stack) and time.monotonic() < deadline:
        c = stack.consumer(LJ_BATCH_SIZE=50, LJ_MAX_DELIVERIES=3, LJ_TEST_CRASH_SN=bad,
                           ASAN_OPTIONS="detect_leaks=0:handle_abort=0")
        while c.alive() and not drained(stack):
            time.sleep(0.1)
        if not c.alive():
            crashes += 1
            stack.procs.remove(c)   # it crashed on purpose (abort in the test hook)
    assert drained(stack)
    dead = dead_letters(stack)
    assert [e[1]["device_sn"] for e in dead] == [bad]
    assert "crashed" in dead[0][1]["dead_reason"]
    assert len(rows(stack, good)) == 6 and rows(stack, bad) == []
    assert 3 <= crashes <= 6, crashes
    assert stack.s.sql("SELECT count(*) FROM t_dead_letter WHERE stream = %s AND entry_id = %s",
                       (stack.stream(), dead[0][1]["dead_id"])) == [(1,)]
    c = assert_conserved(stack)
    assert c["dead"] == 1 and c["stored"] == 6


def test_valid_entry_redelivered_many_times_is_stored_not_dead_lettered(stack):
    """Redis's delivery counter says nothing about the data: an entry read
    ten times by others (a flapping network, restarts) is still stored."""
    sn = serial("often")
    r = stack.s.redis()
    group = stack.prefix + "health_processors"
    stack.producer()
    assert post_all(stack, "/upload_health_data_v2",
                    [{"deviceSn": sn, "heartRate": 70, "timestamp": BASE_MS}]) == [200]
    try:
        r.xgroup_create(stack.stream(), group, id="0", mkstream=True)
    except Exception:
        pass    # the producer made it
    r.xreadgroup(group, "otherhost~00000000:2:0", {stack.stream(): ">"})
    for _ in range(10):
        r.xreadgroup(group, "otherhost~00000000:2:0", {stack.stream(): "0"})
    stack.consumer(LJ_CLAIM_IDLE_MS=1000, LJ_UPKEEP_INTERVAL_MS=200, LJ_MAX_DELIVERIES=5)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 1, what="the entry stored")
    assert dead_letters(stack) == []
    assert_conserved(stack)


# -- 2. readings without a timestamp ---------------------------------------------------

@pytest.mark.parametrize("path,ratio", [("/upload_health_data_v2", None),
                                        ("/upload_health_data", 0),
                                        ("/upload_health_data_batch", 0)])
def test_readings_without_timestamp_are_each_stored(stack, path, ratio):
    sn = serial("nots")
    stack.producer()
    stack.consumer()
    body = [{"deviceSn": sn, "heartRate": 70}, {"deviceSn": sn, "heartRate": 130}]
    r = stack.post(path, body)
    assert r.status_code == 200, r.text
    assert r.json().get("accepted", r.json().get("valid_records")) == 2, r.text
    # Two more uploads of the same shape at once, on two connections.
    threads = [threading.Thread(target=stack.post, args=(path, body)) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wait_for(lambda: len(rows(stack, sn)) == 6, timeout=20, what="six readings stored")
    assert stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s"
                       " AND heart_rate = 130", (sn,)) == [(3,)]
    assert stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s", (sn,)) == [(3,)]


# -- 6. an entry is (stream, ID), not ID ------------------------------------------------

def test_same_entry_id_in_two_streams_is_two_device_reports(stack, servers, tmp_path):
    from conftest import Stack
    other = Stack(servers, tmp_path)
    sn_a, sn_b = serial("devA"), serial("devB")
    eid = "1760000000000-7"
    for st, sn in ((stack, sn_a), (other, sn_b)):
        payload = {"device_sn": sn, "ts": BASE_MS, "battery_level": 50, "wear_state": "worn",
                   "firmware_version": "1.0", "info": {"SerialNumber": sn}}
        st.s.redis().xadd(st.prefix + "device_info_stream", {
            "timestamp": str(BASE_MS), "uuid": str(uuid.uuid4()), "device_sn": sn,
            "message_type": "device_info", "api_version": "v2",
            "payload": json.dumps(payload)}, id=eid)
    try:
        stack.consumer()
        other.consumer()
        for st in (stack, other):
            wait_for(lambda: drained(st, "device_info_stream", "device_processors"),
                     what="device stream drained")
    finally:
        failures = other.stop_all()
    assert not failures, failures
    for sn in (sn_a, sn_b):
        assert stack.s.sql("SELECT count(*) FROM t_device_info_history WHERE device_sn = %s",
                           (sn,)) == [(1,)], sn
        assert stack.s.sql("SELECT count(*) FROM t_device_info WHERE device_sn = %s",
                           (sn,)) == [(1,)], sn
    c = assert_conserved(stack, kind="device_info_stream", group="device_processors")
    assert c["stored"] == 1 and c["duplicate"] == 0


def test_same_entry_id_in_two_streams_raises_each_alert_once(stack, servers, tmp_path):
    from conftest import Stack
    other = Stack(servers, tmp_path)
    sn_a, sn_b = serial("alA"), serial("alB")
    eid = "1760000000000-9"
    for st, sn in ((stack, sn_a), (other, sn_b)):
        st.s.redis().xadd(st.prefix + "health_data_stream", {
            "timestamp": str(BASE_MS), "uuid": str(uuid.uuid4()), "device_sn": sn,
            "message_type": "health_data", "api_version": "v2", "batch_id": "",
            "payload": json.dumps([{"device_sn": sn, "ts": BASE_MS, "heart_rate": 150,
                                    "source_method": "api"}])}, id=eid)
    try:
        stack.consumer()
        wait_for(lambda: drained(stack), what="first stream drained")
        other.consumer()
        wait_for(lambda: drained(other), what="second stream drained")
    finally:
        failures = other.stop_all()
    assert not failures, failures
    for sn in (sn_a, sn_b):
        assert stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s",
                           (sn,)) == [(1,)], sn
    # Published once each, on its own prefix's alert stream.
    for st, sn in ((stack, sn_a), (other, sn_b)):
        alerts = st.s.redis().xrange(st.prefix + "alert_stream")
        assert [a[1]["device_sn"] for a in alerts] == [sn]


# -- 9. side streams are bounded, dead letters kept in PostgreSQL -----------------------

def test_alert_and_dead_letter_streams_are_bounded_and_nothing_is_lost(stack):
    sn = serial("side")
    r = stack.s.redis()
    n_alerts = 600
    for i in range(0, n_alerts, 100):
        r.xadd(stack.stream(), {
            "timestamp": str(BASE_MS), "uuid": str(uuid.uuid4()), "device_sn": sn,
            "message_type": "health_data", "api_version": "v2", "batch_id": "",
            "payload": json.dumps([{"device_sn": sn, "ts": BASE_MS + j, "heart_rate": 150,
                                    "source_method": "api"} for j in range(i, i + 100)])})
    n_dead = 500
    for i in range(n_dead):     # bytes that are not UTF-8 too: kept as hex in the table
        r.xadd(stack.stream(), {"device_sn": sn, "payload": b"not json \xff" + str(i).encode()})
    stack.consumer(LJ_ALERT_STREAM_MAXLEN=100, LJ_DEAD_STREAM_MAXLEN=100, LJ_BATCH_SIZE=200)
    wait_for(lambda: drained(stack), timeout=60, what="everything settled")
    assert stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s",
                       (sn,)) == [(n_alerts,)]
    assert r.xlen(stack.prefix + "alert_stream") < n_alerts / 2
    assert r.xlen(stack.stream() + ":dead") < n_dead / 2
    assert stack.s.sql("SELECT count(*) FROM t_dead_letter WHERE stream = %s",
                       (stack.stream(),)) == [(n_dead,)]
    c = assert_conserved(stack)
    assert c["dead"] == n_dead and c["stored"] == n_alerts // 100


# -- 10. consumer names and the "dead" test ----------------------------------------------

def test_consumer_name_carries_the_machine_key(stack):
    stack.consumer()
    r = stack.s.redis()
    wait_for(lambda: r.exists(stack.stream()) and r.xinfo_consumers(
        stack.stream(), stack.prefix + "health_processors"), what="the consumer to join")
    names = [c["name"] for c in r.xinfo_consumers(stack.stream(),
                                                  stack.prefix + "health_processors")]
    host, pid, _ = names[0].rsplit(":", 2)
    assert host == machine_key() and int(pid) == stack.procs[-1].p.pid


def test_same_host_name_from_another_pid_namespace_is_not_declared_dead(stack):
    """A consumer with our host name but another machine key (another
    container, or before a reboot) may be alive: its entries wait for the
    idle limit instead of being taken at once."""
    r = stack.s.redis()
    group = stack.prefix + "health_processors"
    sn = serial("ns")
    r.xgroup_create(stack.stream(), group, id="0", mkstream=True)
    r.xadd(stack.stream(), {"device_sn": sn, "payload": json.dumps(
        [{"device_sn": sn, "ts": BASE_MS, "source_method": "api"}])})
    twin = f"{socket.gethostname().split(':')[0]}~deadbeef:{2 ** 22 + 7}:0"   # no such pid here
    plain = f"{socket.gethostname()}:{2 ** 22 + 8}:0"   # old-style name: no machine key
    mine = f"{machine_key()}:{2 ** 22 + 9}:0"           # ours, and dead: taken at once
    r.xreadgroup(group, twin, {stack.stream(): ">"})
    for i, name in ((1, plain), (2, mine)):
        r.xadd(stack.stream(), {"device_sn": sn, "payload": json.dumps(
            [{"device_sn": sn, "ts": BASE_MS + i, "source_method": "api"}])})
        r.xreadgroup(group, name, {stack.stream(): ">"})
    stack.consumer(LJ_CLAIM_IDLE_MS=3_600_000, LJ_UPKEEP_INTERVAL_MS=200)
    wait_for(lambda: len(rows(stack, sn)) == 1, what="the dead consumer's entry stored")
    wait_for(lambda: mine not in {c["name"] for c in r.xinfo_consumers(stack.stream(), group)},
             timeout=10, what="our dead consumer removed")
    time.sleep(1)
    owners = {p["consumer"] for p in r.xpending_range(stack.stream(), group, "-", "+", 10)}
    assert owners == {twin, plain}


# -- the identity, as operators see it -------------------------------------------------

def test_conservation_identity_is_shown_in_stream_metrics_and_prometheus(stack):
    sn = serial("ledger")
    stack.producer(LJ_RATIO_REFRESH_MS=100)
    bodies = [{"deviceSn": sn, "heartRate": 70, "timestamp": BASE_MS + i} for i in range(8)]
    bodies.append(bodies[0])    # the same reading again: a duplicate entry
    assert post_all(stack, "/upload_health_data_v2", bodies) == [200] * 9
    stack.s.redis().xadd(stack.stream(), {"device_sn": sn, "payload": "[not json"})
    stack.consumer()

    def shown():
        c = stack.get("/api/stream_metrics").json()["conservation"][stack.stream()]
        return c if c and c["pending"] == 0 and c["undelivered"] == 0 else None
    c = wait_for(shown, timeout=20, what="the ledger to show a drained stream")
    assert c == {"accepted": 10, "stored": 8, "duplicates": 1, "dead_lettered": 1, "gone": 0,
                 "pending": 0, "undelivered": 0, "balanced": True}
    text = stack.get("/metrics").text
    assert (f'ljwx_stream_entries{{stream="{stack.stream()}",state="accepted"}} 10'
            in text.splitlines())
    assert_conserved(stack)


def test_trace_finds_a_dead_letter_trimmed_from_redis(stack):
    sn = serial("trace")
    stack.producer()
    eid = stack.s.redis().xadd(stack.stream(), {"device_sn": sn, "payload": "[not json"})
    stack.consumer()
    wait_for(lambda: drained(stack), what="the poison entry settled")
    stack.s.redis().xtrim(stack.stream() + ":dead", maxlen=0)     # as the bound would
    state = stack.get(f"/api/trace/{eid}").json()
    assert state["state"] == "dead_lettered" and "normalised" in state["reason"], state
    assert state["dead_time"]


def test_entries_two_workers_both_store_are_counted_once(stack, servers):
    """A worker waiting on a lock past the claim limit: another claims its
    batch, both commit (the second finds duplicates), both settle. The
    books count each entry once."""
    sn = serial("race")
    n = 10
    slow = dict(LJ_BATCH_SIZE=50, LJ_CLAIM_IDLE_MS=1000, LJ_UPKEEP_INTERVAL_MS=200,
                LJ_PG_LOCK_TIMEOUT_MS=30000, LJ_PG_STATEMENT_TIMEOUT_MS=30000)
    stack.producer()
    a = stack.consumer(**slow)
    locker = psycopg.connect(servers.dsn)
    locker.execute("LOCK TABLE t_user_health_data IN EXCLUSIVE MODE")
    try:
        bodies = [{"deviceSn": sn, "heartRate": 70, "timestamp": BASE_MS + i} for i in range(n)]
        assert post_all(stack, "/upload_health_data_v2", bodies) == [200] * n
        wait_for(lambda: waiting_on_lock(stack, a.p.pid), timeout=20, what="A waits")
        b = stack.consumer(**slow)
        wait_for(lambda: waiting_on_lock(stack, b.p.pid), timeout=20, what="B waits")
    finally:
        locker.rollback()
        locker.close()
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == n, timeout=30, what="stored")
    time.sleep(1)
    c = assert_conserved(stack)
    assert c["stored"] + c["duplicate"] == n, c

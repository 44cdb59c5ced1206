"""Consumer fleet (SPEC §5): enrichment, alerts, device info, events, dead
letters, claims, trimming, faults. Entries are written straight to the
streams in the producer's normalised form, so each test controls exactly what
a worker reads."""
import json
import os
import signal
import socket
import time
import uuid

import pytest
import redis
import requests

from conftest import machine_key, wait_for

BASE_MS = 1_750_000_000_000     # 2025-06-15


def serial(tag):
    return f"C-{tag}-{uuid.uuid4().hex[:10]}"


def health_entry(stack, records, batch_id=""):
    """XADDs one health entry the way the producer does; returns its ID."""
    first = records[0]["device_sn"]
    for r in records:
        r.setdefault("source_method", "api")
    return stack.s.redis().xadd(stack.stream(), {
        "timestamp": str(int(time.time() * 1000)), "uuid": str(uuid.uuid4()),
        "device_sn": first, "message_type": "health_data", "api_version": "v2",
        "batch_id": batch_id, "payload": json.dumps(records)})


def group_state(stack, stream="health_data_stream", group="health_processors"):
    """(pending, lag) of one of our groups, or None before it exists."""
    try:
        for g in stack.s.redis().xinfo_groups(stack.prefix + stream):
            if g["name"] == stack.prefix + group:
                return g["pending"], g["lag"]
    except redis.exceptions.ResponseError:
        pass
    return None


def drained(stack, stream="health_data_stream", group="health_processors"):
    return group_state(stack, stream, group) == (0, 0)


def rows(stack, sn, cols="(extract(epoch FROM ts) * 1000)::bigint"):
    return stack.s.sql(f"SELECT {cols} FROM t_user_health_data WHERE device_sn = %s ORDER BY ts",
                       (sn,))


def metrics_of(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            key = name.split("{")[0]
            out[key] = out.get(key, 0) + float(value)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- enrichment -----------------------------------------------------------------

def test_enrichment_bound_unbound_and_soft_deleted(stack):
    bound, unbound, deleted = serial("bound"), serial("unbound"), serial("deleted")
    uid = stack.s.sql("INSERT INTO sys_user (user_name, device_sn, customer_id) VALUES"
                      " ('ann', %s, 501) RETURNING id", (bound,))[0][0]
    stack.s.sql("INSERT INTO sys_user_org (user_id, org_id) VALUES (%s, 7001), (%s, 7000)",
                (uid, uid))
    stack.s.sql("INSERT INTO sys_user_org (user_id, org_id, is_deleted) VALUES (%s, 1, 1)",
                (uid,))
    did = stack.s.sql("INSERT INTO sys_user (user_name, device_sn, customer_id, is_deleted)"
                      " VALUES ('gone', %s, 502, 1) RETURNING id", (deleted,))[0][0]
    stack.s.sql("INSERT INTO sys_user_org (user_id, org_id) VALUES (%s, 8000)", (did,))
    for sn in (bound, unbound, deleted):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS, "heart_rate": 70}])
    port = free_port()
    stack.consumer(LJ_STATUS_PORT=port)
    wait_for(lambda: drained(stack), what="the stream to drain")
    assert rows(stack, bound, "user_id, customer_id, org_id") == [(uid, 501, 7000)]
    assert rows(stack, unbound, "user_id, customer_id, org_id") == [(None, None, None)]
    assert rows(stack, deleted, "user_id, customer_id, org_id") == [(None, None, None)]
    assert metrics_of(port)["ljwx_consumer_unbound_records_total"] == 2


def test_binary_copy_stores_what_the_text_format_stored(stack):
    """Rows go as COPY binary: each column must hold what the text format
    put there -- doubles rounded to 15 significant digits, timestamps to the
    microsecond, text with tabs, backslashes and UTF-8 unescaped, NULLs."""
    sn = serial("bin")
    rec = {"device_sn": sn, "ts": BASE_MS + 123, "heart_rate": 0, "temperature": 36.6,
           "latitude": 22.543210987654321, "longitude": -114.0000001, "altitude": 1 / 3,
           "step": 2147483647, "sleep": "deep\tsleep \\ 睡眠\n"}
    health_entry(stack, [rec])
    stack.consumer()
    wait_for(lambda: drained(stack), what="the stream to drain")
    got = rows(stack, sn, "(extract(epoch FROM ts) * 1000000)::bigint, heart_rate, blood_oxygen,"
                          " temperature = 36.6, latitude = '22.5432109876543'::float8,"
                          " longitude = '-114.0000001'::float8,"
                          " altitude = '0.333333333333333'::float8, step, sleep, source_method,"
                          " batch_id")
    assert got == [((BASE_MS + 123) * 1000, 0, None, True, True, True, True, 2147483647,
                    "deep\tsleep \\ 睡眠\n", "api", None)]


# -- alerts -----------------------------------------------------------------------

ALERT_CASES = [
    # metric, value, expected level (None: no alert)
    ("heart_rate", 119, None), ("heart_rate", 120, None), ("heart_rate", 121, "minor"),
    ("heart_rate", 140, "minor"), ("heart_rate", 141, "major"),
    ("heart_rate", 50, None), ("heart_rate", 49, "minor"), ("heart_rate", 40, "minor"),
    ("heart_rate", 39, "major"),
    ("blood_oxygen", 90, None), ("blood_oxygen", 89, "major"), ("blood_oxygen", 85, "major"),
    ("blood_oxygen", 84, "critical"),
    ("temperature", 37.2, None), ("temperature", 37.3, "minor"),
]


def test_alerts_at_each_threshold_boundary(stack):
    sn = serial("alert")
    records = [{"device_sn": sn, "ts": BASE_MS + i * 1000, metric: value}
               for i, (metric, value, _) in enumerate(ALERT_CASES)]
    health_entry(stack, records)
    stack.consumer()
    wait_for(lambda: drained(stack), what="the stream to drain")
    got = stack.s.sql("SELECT extract(epoch FROM alert_time)::bigint * 1000, alert_type,"
                      " alert_value, level, status FROM t_alert_info WHERE device_sn = %s",
                      (sn,))
    by_ts = {r[0]: r[1:] for r in got}
    for i, (metric, value, level) in enumerate(ALERT_CASES):
        ts = BASE_MS + i * 1000
        if level is None:
            assert ts not in by_ts, (metric, value)
        else:
            assert by_ts[ts] == (metric, value, level, "NEW"), (metric, value)
    published = [e[1] for e in stack.s.redis().xrange(stack.prefix + "alert_stream")
                 if e[1]["device_sn"] == sn]
    assert sorted(p["level"] for p in published) == sorted(
        lv for _, _, lv in ALERT_CASES if lv)


def test_redelivered_reading_raises_no_second_alert(stack):
    sn = serial("realert")
    rec = {"device_sn": sn, "ts": BASE_MS, "heart_rate": 150}
    health_entry(stack, [dict(rec)])
    health_entry(stack, [dict(rec)])
    stack.consumer()
    wait_for(lambda: drained(stack), what="the stream to drain")
    assert stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s",
                       (sn,)) == [(1,)]
    assert len(rows(stack, sn)) == 1


def test_alerts_of_a_mixed_batch_come_from_its_new_rows_only(stack):
    """A batch holding an already stored reading takes the staging path; its
    new rows alert once, with the owner of the device, the stored one not."""
    sn = serial("mixalert")
    uid = stack.s.sql("INSERT INTO sys_user (user_name, device_sn, customer_id) VALUES"
                      " ('mia', %s, 601) RETURNING id", (sn,))[0][0]
    stack.s.sql("INSERT INTO sys_user_org (user_id, org_id) VALUES (%s, 7601)", (uid,))
    health_entry(stack, [{"device_sn": sn, "ts": BASE_MS, "heart_rate": 150}])
    stack.consumer()
    wait_for(lambda: drained(stack), what="the first entry")
    stack.stop_all()
    health_entry(stack, [{"device_sn": sn, "ts": BASE_MS, "heart_rate": 150},       # stored
                         {"device_sn": sn, "ts": BASE_MS + 1000, "heart_rate": 150},
                         {"device_sn": sn, "ts": BASE_MS + 2000, "heart_rate": 70},
                         {"device_sn": sn, "ts": BASE_MS + 3000, "blood_oxygen": 80,
                          "temperature": 38.5}])
    stack.consumer()
    wait_for(lambda: drained(stack), what="the mixed entry")
    got = stack.s.sql("SELECT (extract(epoch FROM alert_time) * 1000)::bigint, alert_type,"
                      " alert_value, level, user_id, customer_id, org_id FROM t_alert_info"
                      " WHERE device_sn = %s ORDER BY 1, 2", (sn,))
    owner = (uid, 601, 7601)
    assert got == [(BASE_MS, "heart_rate", 150, "major", *owner),
                   (BASE_MS + 1000, "heart_rate", 150, "major", *owner),
                   (BASE_MS + 3000, "blood_oxygen", 80, "critical", *owner),
                   (BASE_MS + 3000, "temperature", 38.5, "minor", *owner)]
    assert len(rows(stack, sn)) == 4


def test_a_rule_edited_while_running_applies_to_the_next_batch(stack):
    """Rules are read in each batch's transaction: no restart, no stale copy."""
    sn = serial("ruleedit")
    rid = stack.s.sql("INSERT INTO t_alert_rule (rule_name, metric, comparison, threshold,"
                      " level) VALUES (%s, 'stress', '>=', 99, 'critical') RETURNING id",
                      (sn,))[0][0]
    try:
        stack.consumer()
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS, "stress": 99}])
        wait_for(lambda: drained(stack), what="the first entry")
        alerts = "SELECT rule_id, level FROM t_alert_info WHERE device_sn = %s"
        assert stack.s.sql(alerts, (sn,)) == [(rid, "critical")]
        stack.s.sql("UPDATE t_alert_rule SET enabled = false WHERE id = %s", (rid,))
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + 1000, "stress": 99}])
        wait_for(lambda: len(rows(stack, sn)) == 2 and drained(stack), what="the second entry")
        assert stack.s.sql(alerts, (sn,)) == [(rid, "critical")]
    finally:
        stack.s.sql("DELETE FROM t_alert_info WHERE rule_id = %s", (rid,))
        stack.s.sql("DELETE FROM t_alert_rule WHERE id = %s", (rid,))


def pending_of(stack, consumer_pid):
    """Entries pending for the consumer names of process 'consumer_pid'."""
    try:
        got = stack.s.redis().xinfo_consumers(stack.stream(), stack.prefix + "health_processors")
    except redis.exceptions.ResponseError:
        return 0    # no group before the consumer makes it
    return sum(c["pending"] for c in got if f":{consumer_pid}:" in c["name"])


@pytest.mark.parametrize("read_ahead,held", [("1", 20), ("0", 10)])
def test_read_ahead_batch_of_a_killed_worker_is_stored_once_by_the_next(stack, servers,
                                                                        read_ahead, held):
    """While a batch waits on PostgreSQL the worker has read the next one
    (--read-ahead 1): both are pending under its name. Killed there, a
    consumer started after it stores every entry exactly once."""
    import psycopg
    sn = serial(f"ahead{read_ahead}")
    for i in range(60):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i * 1000, "heart_rate": 70}])
    locker = psycopg.connect(servers.dsn)
    locker.execute("LOCK TABLE t_user_health_data IN EXCLUSIVE MODE")
    try:
        c = stack.consumer(LJ_BATCH_SIZE=10, LJ_BATCH_ADAPTIVE=0, LJ_READ_AHEAD=read_ahead)
        wait_for(lambda: pending_of(stack, c.p.pid) == held, timeout=20,
                 what=f"{held} entries held by the worker")
        time.sleep(0.5)             # a read that should not happen would show by now
        assert pending_of(stack, c.p.pid) == held
        c.p.send_signal(signal.SIGKILL)
        c.p.wait()
        stack.procs.remove(c)
    finally:
        locker.rollback()
        locker.close()
    stack.consumer()
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 60, timeout=30,
             what="every entry stored")
    assert rows(stack, sn) == [(BASE_MS + i * 1000,) for i in range(60)]
    assert stack.s.redis().xlen(stack.stream() + ":dead") == 0


def test_sigterm_under_load_leaves_no_entry_pending(stack):
    """A clean stop stores what it read ahead: nothing of the stopped
    process stays pending for a claim to find later."""
    sn = serial("stopahead")
    c = stack.consumer(LJ_BATCH_SIZE=5, LJ_BATCH_ADAPTIVE=0)
    pid = c.p.pid
    n = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:      # a steady trickle: a read is always under way
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + n * 1000, "heart_rate": 70}])
        n += 1
        if n == 100:
            c.p.send_signal(signal.SIGTERM)
        time.sleep(0.005)
    assert c.p.wait(20) == 0
    stack.procs.remove(c)
    assert pending_of(stack, pid) == 0
    stack.consumer()
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == n, timeout=30,
             what="every entry stored")


# -- device info and events ----------------------------------------------------------

def device_entry(stack, sn, ts, battery, extra=None):
    info = {"SerialNumber": sn, "batteryLevel": battery, **(extra or {})}
    payload = {"device_sn": sn, "ts": ts, "battery_level": battery, "wear_state": "worn",
               "firmware_version": "1.2.3", "info": info}
    return stack.s.redis().xadd(stack.prefix + "device_info_stream", {
        "timestamp": str(ts), "uuid": str(uuid.uuid4()), "device_sn": sn,
        "message_type": "device_info", "api_version": "v2", "payload": json.dumps(payload)})


def event_entry(stack, sn, ts, event_type):
    payload = {"device_sn": sn, "ts": ts, "event_type": event_type,
               "payload": {"deviceSn": sn, "eventType": event_type, "lat": 22.5}}
    return stack.s.redis().xadd(stack.prefix + "common_event_stream", {
        "timestamp": str(ts), "uuid": str(uuid.uuid4()), "device_sn": sn,
        "message_type": "common_event", "api_version": "v2", "payload": json.dumps(payload)})


def test_device_info_upserts_latest_and_keeps_history(stack):
    sn = serial("dev")
    device_entry(stack, sn, BASE_MS + 2000, 80)
    device_entry(stack, sn, BASE_MS + 1000, 90)     # older report arrives later
    device_entry(stack, sn, BASE_MS + 3000, 70, {"network": "4G"})
    stack.consumer()
    wait_for(lambda: drained(stack, "device_info_stream", "device_processors"),
             what="device stream to drain")
    latest = stack.s.sql("SELECT battery_level, wear_state, firmware_version, info->>'network',"
                         " extract(epoch FROM report_time)::bigint * 1000 FROM t_device_info"
                         " WHERE device_sn = %s", (sn,))
    assert latest == [(70, "worn", "1.2.3", "4G", BASE_MS + 3000)]
    history = stack.s.sql("SELECT (info->>'batteryLevel')::int FROM t_device_info_history"
                          " WHERE device_sn = %s ORDER BY report_time", (sn,))
    assert history == [(90,), (80,), (70,)]


def test_events_are_stored_and_sos_and_fall_raise_critical_alerts(stack):
    sn = serial("ev")
    event_entry(stack, sn, BASE_MS, "SOS")
    event_entry(stack, sn, BASE_MS + 1000, "FALL_DOWN")
    event_entry(stack, sn, BASE_MS + 2000, "LOW_BATTERY")
    event_entry(stack, sn, BASE_MS, "SOS")          # the same event again
    stack.consumer()
    wait_for(lambda: drained(stack, "common_event_stream", "event_processors"),
             what="event stream to drain")
    events = stack.s.sql("SELECT event_type, payload->>'lat' FROM t_common_event"
                         " WHERE device_sn = %s ORDER BY event_time", (sn,))
    assert events == [("SOS", "22.5"), ("FALL_DOWN", "22.5"), ("LOW_BATTERY", "22.5")]
    alerts = stack.s.sql("SELECT alert_type, level FROM t_alert_info WHERE device_sn = %s"
                         " ORDER BY alert_time", (sn,))
    assert alerts == [("SOS", "critical"), ("FALL_DOWN", "critical")]


# -- poison, dead letters, claims ------------------------------------------------------

def test_poison_entry_is_dead_lettered_and_the_rest_of_its_batch_committed(stack, servers):
    good = serial("good")
    bad = serial("poison")
    ids = [health_entry(stack, [{"device_sn": good, "ts": BASE_MS + i}]) for i in range(3)]
    # Refused by PostgreSQL (a CHECK constraint, as an operator might add one):
    # the batch is split until this entry is alone, the rest is committed.
    refused_id = health_entry(stack, [{"device_sn": bad, "ts": BASE_MS}])
    # Refused when read: an integer column value no column can hold.
    overflow_id = health_entry(stack, [{"device_sn": good, "ts": BASE_MS + 5,
                                        "heart_rate": 3_000_000_000}])
    unreadable_id = stack.s.redis().xadd(stack.stream(), {"payload": "not a record list"})
    ids += [health_entry(stack, [{"device_sn": good, "ts": BASE_MS + 10 + i}])
            for i in range(3)]
    servers.sql("ALTER TABLE t_user_health_data ADD CONSTRAINT it_poison"
                f" CHECK (device_sn <> '{bad}')")
    try:
        port = free_port()
        stack.consumer(LJ_STATUS_PORT=port)
        wait_for(lambda: drained(stack), what="the stream to drain")
    finally:
        servers.sql("ALTER TABLE t_user_health_data DROP CONSTRAINT it_poison")
    assert len(rows(stack, good)) == 6
    assert rows(stack, bad) == []
    dead = stack.s.redis().xrange(stack.stream() + ":dead")
    by_id = {e[1]["dead_id"]: e[1] for e in dead}
    assert set(by_id) == {refused_id, overflow_id, unreadable_id}
    assert "refused by PostgreSQL" in by_id[refused_id]["dead_reason"]
    assert bad in by_id[refused_id]["payload"]      # the original fields travel along
    assert "normalised" in by_id[overflow_id]["dead_reason"]
    assert "normalised" in by_id[unreadable_id]["dead_reason"]
    assert metrics_of(port)["ljwx_consumer_dead_lettered_total"] == 3


def test_entries_of_a_dead_local_consumer_are_taken_over_at_once(stack):
    r = stack.s.redis()
    sn = serial("orphan")
    r.xgroup_create(stack.stream(), stack.prefix + "health_processors", id="0", mkstream=True)
    for i in range(4):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i}])
    dead_name = f"{machine_key()}:{2 ** 22 + 12345}:0"       # no such pid
    r.xreadgroup(stack.prefix + "health_processors", dead_name, {stack.stream(): ">"})
    # Idle limit far away: only the dead-process rule can hand these over.
    stack.consumer(LJ_CLAIM_IDLE_MS=3_600_000)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 4, what="takeover")
    names = [c["name"] for c in r.xinfo_consumers(stack.stream(),
                                                  stack.prefix + "health_processors")]
    assert dead_name not in names


def test_idle_entries_of_another_consumer_are_claimed(stack):
    r = stack.s.redis()
    sn = serial("idle")
    r.xgroup_create(stack.stream(), stack.prefix + "health_processors", id="0", mkstream=True)
    for i in range(3):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i}])
    r.xreadgroup(stack.prefix + "health_processors", "otherhost:1:0", {stack.stream(): ">"})
    stack.consumer(LJ_CLAIM_IDLE_MS=1000, LJ_UPKEEP_INTERVAL_MS=200)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 3, what="claim of idle entries")


# -- faults -------------------------------------------------------------------------------

def backend_waiting_on_lock(stack):
    return stack.s.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                       " AND application_name LIKE %s", ("%:%:%",))[0][0] > 0


def test_consumer_killed_mid_batch_stores_everything_exactly_once(stack, servers):
    import psycopg
    sn = serial("kill")
    n = 50
    for i in range(n):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i, "heart_rate": 60}])
    locker = psycopg.connect(servers.dsn)
    locker.execute("LOCK TABLE t_user_health_data IN EXCLUSIVE MODE")
    first = stack.consumer(LJ_BATCH_SIZE=20)
    wait_for(lambda: backend_waiting_on_lock(stack), what="the batch to block on the lock")
    first.p.send_signal(signal.SIGKILL)
    first.p.wait()
    stack.procs.remove(first)       # killed on purpose: no clean exit to check
    locker.rollback()
    locker.close()
    assert rows(stack, sn) == []
    stack.consumer(LJ_BATCH_SIZE=20)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == n, timeout=20,
             what="every record stored")
    assert [r[0] for r in rows(stack, sn)] == [BASE_MS + i for i in range(n)]


def test_two_processes_with_two_workers_share_the_stream(stack):
    sn = serial("share")
    n = 200
    for i in range(n):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i}])
    ports = [free_port(), free_port()]
    for p in ports:
        stack.consumer("--workers", "2", LJ_BATCH_SIZE=5, LJ_STATUS_PORT=p)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == n, timeout=30,
             what="all records stored")
    inserted = [metrics_of(p)["ljwx_consumer_rows_inserted_total"] for p in ports]
    assert sum(inserted) == n
    assert all(x > 0 for x in inserted), inserted


def test_trimming_never_removes_what_a_group_still_needs(stack):
    r = stack.s.redis()
    sn = serial("trim")
    slow = stack.prefix + "slow_group"
    r.xgroup_create(stack.stream(), slow, id="0", mkstream=True)
    ids = [health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i}]) for i in range(10)]
    r.xreadgroup(slow, "slow:1:0", {stack.stream(): ">"}, count=4)   # 4 pending on 'slow'
    r.xack(stack.stream(), slow, ids[0], ids[1])                      # 2 of them acked
    stack.consumer(LJ_UPKEEP_INTERVAL_MS=200)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 10, what="all stored")
    time.sleep(1.0)     # several upkeep rounds
    remaining = [e[0] for e in r.xrange(stack.stream())]
    assert remaining == ids[2:]     # below the oldest pending of 'slow' only
    r.xack(stack.stream(), slow, *ids[2:4])
    r.xreadgroup(slow, "slow:1:0", {stack.stream(): ">"})
    r.xack(stack.stream(), slow, *ids[4:])
    wait_for(lambda: [e[0] for e in r.xrange(stack.stream())] == [ids[-1]],
             what="trim once every group is done")


def test_postgres_outage_acknowledges_nothing_then_stores_all(stack, servers):
    sn = serial("pgdown")
    port = free_port()
    stack.consumer(LJ_STATUS_PORT=port)
    wait_for(lambda: group_state(stack) is not None, what="the group")
    health_entry(stack, [{"device_sn": sn, "ts": BASE_MS - 1}])
    wait_for(lambda: len(rows(stack, sn)) == 1, what="a first row")
    acked = metrics_of(port)["ljwx_consumer_entries_acked_total"]
    servers.stop_pg()
    try:
        for i in range(20):
            health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i}])
        time.sleep(2)
        assert metrics_of(port)["ljwx_consumer_entries_acked_total"] == acked
        pending, lag = group_state(stack)
        assert pending + lag == 20
    finally:
        servers.start_pg()
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 21, timeout=30,
             what="everything stored after PostgreSQL returned")


def test_consumer_creates_partitions_ahead(stack, servers):
    name = servers.sql("SELECT 't_user_health_data_' || to_char(date_trunc('month', now()"
                       " AT TIME ZONE 'UTC') + interval '3 month', 'YYYYMM')")[0][0]
    servers.sql(f"DROP TABLE IF EXISTS {name}")
    stack.consumer()
    wait_for(lambda: servers.sql("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0],
             what="the partition to be created again")


def test_stale_consumers_with_nothing_pending_are_removed(stack):
    r = stack.s.redis()
    group = stack.prefix + "health_processors"
    r.xgroup_create(stack.stream(), group, id="0", mkstream=True)
    eid = health_entry(stack, [{"device_sn": serial("stale"), "ts": BASE_MS}])
    r.xreadgroup(group, "otherhost:7:0", {stack.stream(): ">"})
    r.xack(stack.stream(), group, eid)                  # idle, nothing pending
    r.xreadgroup(group, "otherhost:8:0", {stack.stream(): "0"})     # idle, still empty
    health_entry(stack, [{"device_sn": serial("stale2"), "ts": BASE_MS}])
    r.xreadgroup(group, "busyhost:9:0", {stack.stream(): ">"})      # holds a pending entry
    stack.consumer(LJ_STALE_CONSUMER_MS=1000, LJ_UPKEEP_INTERVAL_MS=200,
                   LJ_CLAIM_IDLE_MS=3_600_000)

    def names():
        return {c["name"] for c in r.xinfo_consumers(stack.stream(), group)}
    wait_for(lambda: not names() & {"otherhost:7:0", "otherhost:8:0"}, timeout=15,
             what="the stale consumers to be removed")
    assert "busyhost:9:0" in names()    # pending entries keep a consumer in the group


# -- adaptive batches ------------------------------------------------------------

def batch_count(port, stream):
    """COUNT of the next read of the worker serving 'stream' (its gauge)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("ljwx_consumer_batch_count{") and f'stream="{stream}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError(f"no batch_count for {stream}:\n{text}")


def test_adaptive_count_grows_under_a_backlog_and_shrinks_when_it_drains(stack):
    sn = serial("adapt")
    entries, per_entry = 3000, 10
    pipe = stack.s.redis().pipeline(transaction=False)
    for e in range(entries):
        recs = [{"device_sn": sn, "ts": BASE_MS + e * per_entry + i, "source_method": "api"}
                for i in range(per_entry)]
        pipe.xadd(stack.stream(), {"timestamp": str(int(time.time() * 1000)),
                                   "uuid": str(uuid.uuid4()), "device_sn": sn,
                                   "message_type": "health_data", "api_version": "v2",
                                   "batch_id": "", "payload": json.dumps(recs)})
    pipe.execute()
    port = free_port()
    # The commit-time cut is off here (unit-tested): ASan's commit times would make it the
    # deciding rule, and this test is about lag.
    stack.consumer(LJ_STATUS_PORT=port, LJ_BATCH_SIZE=200, LJ_BATCH_MIN=10,
                   LJ_BATCH_TARGET_MS=0, LJ_LOG_LEVEL="info")
    seen = []

    def sample_until_drained():
        try:
            count = batch_count(port, stack.stream())
        except requests.ConnectionError:
            return False
        if count or seen:   # 0: the status port answers before the worker's first COUNT
            seen.append(count)
        return drained(stack)
    wait_for(sample_until_drained, timeout=60, interval=0.02, what="the backlog drained")
    assert seen[0] in (10, 200), seen[:5]          # min, or already grown by the first read
    assert max(seen) == 200, sorted(set(seen))
    batches = metrics_of(port)["ljwx_consumer_batches_total"]
    assert batches < entries / 10 / 3, batches     # COUNT 10 throughout would take 300
    assert stack.s.sql("SELECT count(*), count(DISTINCT ts) FROM t_user_health_data"
                       " WHERE device_sn = %s", (sn,)) == [(entries * per_entry,) * 2]
    # Drained: the next empty read brings COUNT back to min, and a trickle keeps it there.
    wait_for(lambda: batch_count(port, stack.stream()) == 10, what="COUNT back at min")
    for i in range(5):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + 10**9 + i}])
        time.sleep(0.1)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == entries * per_entry + 5,
             what="the trickle stored")
    assert batch_count(port, stack.stream()) == 10


def test_fixed_count_stays_at_batch_size(stack):
    sn = serial("fixed")
    for i in range(30):
        health_entry(stack, [{"device_sn": sn, "ts": BASE_MS + i}])
    port = free_port()
    stack.consumer(LJ_STATUS_PORT=port, LJ_BATCH_SIZE=50, LJ_BATCH_ADAPTIVE=0)
    wait_for(lambda: drained(stack) and len(rows(stack, sn)) == 30, what="entries stored")
    assert batch_count(port, stack.stream()) == 50
    assert metrics_of(port)["ljwx_consumer_batches_total"] == 1     # all 30 in one read

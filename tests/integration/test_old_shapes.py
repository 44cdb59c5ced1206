"""The old service's response shapes (SPEC §7, issue 16): its scripts,
dashboards and monitors read our operations endpoints unmodified, so every
answer carries the old keys with the old types, next to ours. Each test
reads the exact key path an old reader reads and checks its type."""
import datetime
import re
import json
import os
import subprocess
import uuid
import zoneinfo

import requests

from conftest import BIN, wait_for

BASE_S = 1_750_000_000
KINDS = ("health_data_stream", "device_info_stream", "common_event_stream")


def serial(tag):
    return f"OS-{tag}-{uuid.uuid4().hex[:10]}"


def is_int(v):
    return type(v) is int           # bool is not an int here


def is_num(v):
    return type(v) in (int, float)


def set_ratio(stack, ratio):
    resp = stack.post("/api/stream_traffic_ratio", {"ratio": ratio})
    assert resp.status_code == 200, resp.text
    wait_for(lambda: stack.get("/api/stream_traffic_ratio").json()["current_ratio"] == ratio,
             what=f"ratio {ratio}")


def rows(stack, sn):
    return stack.s.sql("SELECT upload_method FROM t_user_health_data WHERE device_sn = %s",
                       (sn,))


def iso(v):
    """An ISO 8601 time every reader parses: an explicit +00:00 offset, not
    "Z" (Python's fromisoformat refuses "Z" before 3.11)."""
    assert isinstance(v, str), v
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00", v), v
    t = datetime.datetime.fromisoformat(v)
    assert t.utcoffset() == datetime.timedelta(0), v
    return t


# -- /api/stream_health ------------------------------------------------------------------

def test_stream_health_old_shape_on_a_healthy_stack(stack):
    stack.producer()
    stack.consumer()
    names = [stack.stream(k) for k in KINDS]
    r = stack.s.redis()
    wait_for(lambda: all(r.exists(n) for n in names), what="the consumer's groups")
    resp = stack.get("/api/stream_health")
    assert resp.status_code == 200, resp.text
    j = resp.json()
    assert j["healthy"] is True, j            # the cutover script aborts otherwise
    assert is_int(j["timestamp"]) and abs(j["timestamp"] - datetime.datetime.now().timestamp()) < 60
    assert j["streams"] == names
    assert "error" not in j
    # ours, renamed where the old key took the name
    assert j["redis_connected"] is True
    assert is_int(j["stream_info"][names[0]]["length"])


def test_stream_health_is_false_while_no_consumer_group_exists(stack):
    stack.producer()            # no consumer has ever started: nothing drains the streams
    resp = stack.get("/api/stream_health")
    j = resp.json()
    assert resp.status_code == 200, resp.text
    assert j["healthy"] is False and isinstance(j["error"], str) and "group" in j["error"]
    assert is_int(j["timestamp"])
    assert j["streams"] == [stack.stream(k) for k in KINDS]


def test_stream_health_503_shape_with_redis_stopped(stack):
    stack.producer()
    stack.consumer()
    stack.s.stop_redis()
    try:
        def down():
            resp = stack.get("/api/stream_health")
            return [resp] if resp.status_code == 503 else None     # a 503 Response is falsy
        resp, = wait_for(down, timeout=15, what="stream_health 503")
        j = resp.json()
        assert j["healthy"] is False
        assert isinstance(j["error"], str) and j["error"]
        assert is_int(j["timestamp"])
        h = stack.get("/api/health").json()
        assert h["status"] == "unhealthy" and isinstance(h["error"], str) and h["error"]
        assert iso(h["timestamp"])
        assert h["state"] == "degraded" and h["redis"] is False and h["postgres"] is True
    finally:
        stack.s.start_redis()


# -- /api/health ---------------------------------------------------------------------------

def test_health_old_shape(stack):
    stack.producer()
    j = stack.get("/api/health").json()
    assert j["status"] == "healthy"
    stamp = iso(j["timestamp"])
    assert stamp.tzinfo is not None
    assert abs((stamp - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 60
    assert "error" not in j
    assert j["state"] == "healthy" and j["redis"] is True and j["postgres"] is True


# -- /api/stream_stats ---------------------------------------------------------------------

def old_stream_stats(stack):
    resp = stack.get("/api/stream_stats")
    assert resp.status_code == 200, resp.text
    j = resp.json()
    assert is_int(j["timestamp"])
    m = j["stream_stats"]["manager_stats"]
    for k in ("messages_produced", "messages_consumed", "errors"):
        assert is_int(m[k]), (k, m)
    assert m["last_error_time"] is None or is_int(m["last_error_time"])
    for kind in KINDS:
        name = stack.stream(kind)
        s = j["stream_stats"]["streams"][name]
        info = s["stream_info"]
        assert is_int(info["length"]) and is_int(info["groups"])
        for k in ("first_entry", "last_entry"):
            assert info[k] is None or isinstance(info[k], str)
        assert s["config"]["consumer_group"] == stack.prefix + {
            "health_data_stream": "health_processors", "device_info_stream": "device_processors",
            "common_event_stream": "event_processors"}[kind]
        assert s["config"]["max_length"] is None
        c = j["consumer_stats"][name]
        for k in ("processed_messages", "processed_batches", "errors"):
            assert is_int(c[k]), (k, c)
    assert isinstance(j["streams"], dict)   # ours stays
    return j


def test_stream_stats_old_shape_moves_with_uploads_on_both_paths(stack):
    stack.producer()
    before = old_stream_stats(stack)
    name = stack.stream()
    info = before["stream_stats"]["streams"][name]["stream_info"]
    assert info["length"] == 0 and info["first_entry"] is None and info["last_entry"] is None

    set_ratio(stack, 0)     # legacy path: the stream does not move
    sn = serial("ss0")
    assert stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 70,
                                              "timestamp": BASE_S}).json()["status"] == "success"
    j = old_stream_stats(stack)
    assert j["stream_stats"]["streams"][name]["stream_info"]["length"] == 0
    assert j["stream_stats"]["manager_stats"]["messages_produced"] == 0

    set_ratio(stack, 1)     # stream path
    sn = serial("ss1")
    ids = []
    for i in range(3):
        resp = stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 70,
                                                  "timestamp": BASE_S + i})
        assert resp.json()["status"] == "accepted", resp.text
        ids.append(resp.json()["stream_id"])
    j = old_stream_stats(stack)
    info = j["stream_stats"]["streams"][name]["stream_info"]
    assert info["length"] == 3 and info["groups"] == 0
    assert info["first_entry"] == ids[0] and info["last_entry"] == ids[-1]
    assert j["stream_stats"]["manager_stats"]["messages_produced"] == 3
    assert j["consumer_stats"][name]["processed_messages"] == 0

    stack.consumer()
    wait_for(lambda: len(rows(stack, sn)) == 3, what="three stream rows")

    def consumed():
        j = old_stream_stats(stack)
        c = j["consumer_stats"][name]
        return j if c["processed_messages"] == 3 else None
    j = wait_for(consumed, what="processed_messages 3")
    c = j["consumer_stats"][name]
    assert 1 <= c["processed_batches"] <= 3 and c["errors"] == 0
    assert j["stream_stats"]["manager_stats"]["messages_consumed"] >= 3
    assert j["stream_stats"]["streams"][name]["stream_info"]["groups"] == 1


def test_stream_stats_counts_consumer_errors(stack):
    """A dead-lettered entry is a consumer error in the old shape."""
    stack.producer()
    stack.consumer()
    name = stack.stream()
    r = stack.s.redis()
    wait_for(lambda: r.exists(name), what="the health group")
    r.xadd(name, {"timestamp": "1", "uuid": "u", "device_sn": "X", "message_type": "health_data",
                  "api_version": "v2", "payload": "not json"})

    def errored():
        c = old_stream_stats(stack)["consumer_stats"][name]
        return c if c["errors"] >= 1 else None
    c = wait_for(errored, what="a consumer error")
    assert c["processed_messages"] == 0


def test_failed_batches_are_consumer_errors_and_health_names_the_outage(stack):
    stack.producer()
    stack.consumer()
    name = stack.stream()
    r = stack.s.redis()
    wait_for(lambda: r.exists(name), what="the health group")
    sn = serial("pgdown")
    stack.s.stop_pg()
    try:
        assert stack.post("/upload_health_data_v2", reading_(sn, BASE_S)).ok
        wait_for(lambda: old_stream_stats(stack)["consumer_stats"][name]["errors"] >= 1,
                 timeout=20, what="a failed batch counted")
        h = stack.get("/api/health")
        assert h.status_code == 200, h.text         # the stream path still stores
        assert h.json()["status"] == "unhealthy" and h.json()["error"] == "postgresql unreachable"
        stack.s.stop_redis()
        try:
            def both_down():
                resp = stack.get("/api/health")
                return [resp] if resp.status_code == 503 else None
            h, = wait_for(both_down, timeout=15, what="/api/health 503")
            j = h.json()
            assert j["status"] == "unhealthy" and j["state"] == "down"
            assert j["error"] == "redis and postgresql unreachable" and iso(j["timestamp"])
        finally:
            stack.s.start_redis()
    finally:
        stack.s.start_pg()
    wait_for(lambda: rows(stack, sn), timeout=30, what="the row after the outage")
    wait_for(lambda: old_stream_stats(stack)["consumer_stats"][name]["processed_messages"] == 1,
             timeout=15, what="processed_messages 1")


def test_stream_stats_last_error_time_after_a_failed_xadd(stack):
    stack.producer()
    assert old_stream_stats(stack)["stream_stats"]["manager_stats"]["last_error_time"] is None
    stack.s.redis().config_set("maxmemory", "1")     # every XADD now -OOM
    try:
        resp = stack.post("/upload_health_data_v2", {"deviceSn": serial("oom"), "heartRate": 70})
        assert resp.status_code == 503
    finally:
        stack.s.redis().config_set("maxmemory", "512mb")
    m = old_stream_stats(stack)["stream_stats"]["manager_stats"]
    assert m["errors"] >= 1
    assert abs(m["last_error_time"] - datetime.datetime.now().timestamp()) < 60


# -- /api/stream_metrics and the rollback answer -------------------------------------------

def test_stream_metrics_timestamp_is_epoch_seconds(stack):
    stack.producer()
    j = stack.get("/api/stream_metrics").json()
    assert is_num(j["timestamp"]) and abs(j["timestamp"] - datetime.datetime.now().timestamp()) < 60
    assert is_num(j["duration_seconds"])
    for p in ("stream", "traditional"):
        assert is_int(j["summary"][p]["requests"])
    assert iso(j["time"])       # ours, renamed


def test_emergency_rollback_answer_old_shape(stack):
    stack.producer()
    set_ratio(stack, 1)
    assert stack.post("/upload_health_data", {"deviceSn": serial("rb"), "heartRate": 70}).ok
    resp = stack.post("/api/emergency_rollback", {})
    assert resp.status_code == 200, resp.text
    j = resp.json()
    assert j["success"] is True and j["traffic_ratio"] == 0 and is_int(j["traffic_ratio"])
    assert j["consumers_stopped"] is False
    assert isinstance(j["rollback_time"], str) and iso(j["rollback_time"])
    assert isinstance(j["message"], str)
    cm = j["current_metrics"]
    assert set(cm) >= {"stream", "traditional"}
    assert cm["stream"]["requests"] == 1 and is_num(cm["stream"]["qps"])
    assert is_num(cm["traditional"]["error_rate"])


# -- /api/stats ------------------------------------------------------------------------------

def zone_not_utc_today():
    """A zone whose date differs from UTC's right now (+14 or -11 always does)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    for name in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        if now.astimezone(zoneinfo.ZoneInfo(name)).date() != now.date():
            return name
    raise AssertionError("no zone differs from UTC now")


def insert_created(stack, sn, created):
    stack.s.sql("INSERT INTO t_user_health_data (device_sn, ts, user_id, upload_method, create_time)"
                " VALUES (%s, %s, 7, 'optimized', %s)", (sn, created, created))


def today_counts(stack):
    resp = stack.get("/api/stats")
    assert resp.status_code == 200, resp.text
    j = resp.json()
    for k in ("today_records", "active_devices", "active_users"):
        assert is_int(j[k]), (k, j)
    assert iso(j["timestamp"]).tzinfo is not None
    return j


def check_zone_counts(stack, zone):
    midnight = datetime.datetime.now(zoneinfo.ZoneInfo(zone)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    before = today_counts(stack)
    today_sn, yesterday_sn = serial("today"), serial("yday")
    insert_created(stack, today_sn, midnight + datetime.timedelta(minutes=1))
    insert_created(stack, yesterday_sn, midnight - datetime.timedelta(minutes=1))
    after = today_counts(stack)
    assert after["today_records"] - before["today_records"] == 1, (zone, before, after)
    assert after["active_devices"] - before["active_devices"] == 1
    assert after["records_today"] == after["today_records"]     # ours: the same count


def test_stats_counts_rows_created_today_in_the_configured_zone(stack):
    zone = zone_not_utc_today()
    stack.producer(LJ_TIMEZONE=zone, LJ_STATS_CACHE_MS=0)
    check_zone_counts(stack, zone)
    assert today_counts(stack)["timezone"] == zone


def test_stats_zone_defaults_to_the_system_zone_from_tz(stack):
    zone = zone_not_utc_today()
    stack.producer(TZ=zone, LJ_STATS_CACHE_MS=0)
    check_zone_counts(stack, zone)


def test_unknown_time_zone_is_refused_at_start(stack):
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "Asia/Shanghai;DROP"):
        p = subprocess.run([os.path.join(BIN, "ljwx-producer"), "--timezone", bad],
                           env=stack.env(), capture_output=True, text=True, timeout=20)
        assert p.returncode != 0, p.stdout + p.stderr
        out = p.stdout + p.stderr
        assert "timezone" in out and bad in out, out


# -- {"devices": [...]} ------------------------------------------------------------------------

def test_devices_shape_on_both_paths_answers_processed(stack):
    stack.producer()
    stack.consumer()
    for ratio, status, method in ((0, "success", "optimized"), (1, "accepted", "stream_v2")):
        set_ratio(stack, ratio)
        sn = serial(f"dev{ratio}")
        records = [{"deviceSn": sn, "heartRate": 60 + i, "timestamp": BASE_S + i} for i in range(4)]
        records.append({"deviceSn": sn, "heartRate": 999})
        resp = stack.post("/upload_health_data_batch", {"devices": records})
        assert resp.status_code == 200, resp.text
        j = resp.json()
        assert j["status"] == status
        assert is_int(j["processed"]) and j["processed"] == 4
        assert (j["total_records"], j["valid_records"], j["errors"]) == (5, 4, 1)
        wait_for(lambda: len(rows(stack, sn)) == 4, what="four rows")
        assert {r[0] for r in rows(stack, sn)} == {method}


def test_devices_shape_on_the_other_health_endpoints(stack):
    stack.producer()
    stack.consumer()
    sn = serial("devv2")
    resp = stack.post("/upload_health_data_v2", {"devices": [reading_(sn, BASE_S)]})
    assert resp.status_code == 200 and resp.json()["accepted"] == 1, resp.text
    wait_for(lambda: rows(stack, sn), what="the v2 row")


def test_devices_shape_bad_input_is_refused_whole(stack):
    stack.producer()
    sn = serial("bad")
    for body, msg in (({"devices": []}, "no records"),
                      # no list: a bare record (without a serial), refused as one
                      ({"devices": "x"}, "no valid record"),
                      ({"devices": {"deviceSn": sn}}, "no valid record"),
                      ({"devices": [1, 2]}, "no valid record"),
                      ({"devices": [reading_(sn, BASE_S)], "data": []}, "both")):
        resp = stack.post("/upload_health_data_batch", body)
        assert resp.status_code == 400, (body, resp.text)
        assert msg in resp.json()["message"], (body, resp.text)
    assert stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                       (sn,)) == [(0,)]


def test_bare_record_with_an_unknown_devices_key_is_accepted(stack):
    """SPEC §2.1: unknown keys are ignored. A bare record carrying a key
    named "devices" (a paired-devices count, even a list) is one reading:
    "devices" is the batch shape only as a list beside no serial."""
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=0)
    for i, extra in enumerate((2, [{"deviceSn": "other"}], "x")):
        sn = serial(f"dk{i}")
        resp = stack.post("/upload_health_data", dict(reading_(sn, BASE_S), devices=extra))
        assert resp.status_code == 200, resp.text
        assert len(rows(stack, sn)) == 1
    assert stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = 'other'"
                       ) == [(0,)]


def reading_(sn, ts):
    return {"deviceSn": sn, "heartRate": 70, "timestamp": ts}

"""Producer endpoints (SPEC §2, §4, §7): routed uploads and the legacy path,
gray release, rollback, admin auth, device info and events, operations
endpoints, limits and timeouts, Redis outages. Real servers throughout."""
import concurrent.futures
import json
import re
import socket
import time
import uuid

import pytest
import requests

from conftest import wait_for

BASE_S = 1_750_000_000


def serial(tag):
    return f"P-{tag}-{uuid.uuid4().hex[:10]}"


def fnv1a(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def rows(stack, sn, cols="upload_method"):
    return stack.s.sql(f"SELECT {cols} FROM t_user_health_data WHERE device_sn = %s ORDER BY ts",
                       (sn,))


def set_ratio(stack, ratio, headers=None, url=None):
    return requests.post((url or stack.url) + "/api/stream_traffic_ratio",
                         data=json.dumps({"ratio": ratio}), headers=headers or {}, timeout=5)


def get_ratio(url):
    return requests.get(url + "/api/stream_traffic_ratio", timeout=5).json()["current_ratio"]


# -- the migration runbook's validation flow ------------------------------------------

def test_routed_upload_at_ratio_0_is_stored_synchronously_by_the_legacy_path(stack):
    stack.producer()
    sn = serial("legacy")
    body = {"data": {"deviceSn": sn, "heartRate": 75, "timestamp": BASE_S}}
    resp = stack.post("/upload_health_data", body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "success"
    assert resp.json()["accepted"] == 1
    assert rows(stack, sn, "upload_method, heart_rate, stream_id") == [("optimized", 75, None)]
    assert stack.s.redis().exists(stack.stream()) == 0
    # The same body on the stream path is accepted (and, being the same
    # reading, stored no second time by a consumer).
    resp = stack.post("/upload_health_data_v2", body)
    assert resp.status_code == 200 and resp.json()["status"] == "accepted"


def test_batch_endpoint_answers_with_the_batch_keys_on_both_paths(stack):
    stack.producer()
    stack.consumer()
    for ratio, status in ((0, "success"), (1, "accepted")):
        assert set_ratio(stack, ratio).status_code == 200
        wait_for(lambda: get_ratio(stack.url) == ratio, what="ratio")
        sn = serial(f"batch{ratio}")
        records = [{"deviceSn": sn, "heartRate": 60 + i, "timestamp": BASE_S + i} for i in range(5)]
        records.append({"deviceSn": sn, "heartRate": 999})
        resp = stack.post("/upload_health_data_batch", {"data": records, "batchId": f"B{ratio}"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == status
        assert body["batch_id"] == f"B{ratio}"
        assert (body["total_records"], body["valid_records"], body["errors"]) == (6, 5, 1)
        assert body["error_details"] == ["record 5: heart_rate out of range 0..300"]
        assert body["processing_time_ms"] >= 0
        wait_for(lambda: len(rows(stack, sn)) == 5, what="five rows")
        want = "optimized" if ratio == 0 else "stream_v2"
        assert {r[0] for r in rows(stack, sn)} == {want}
        assert {r[0] for r in rows(stack, sn, "batch_id")} == {f"B{ratio}"}


# -- gray release -------------------------------------------------------------------------

def test_routing_is_sticky_and_matches_the_ratio(stack):
    stack.producer()
    assert set_ratio(stack, 0.3).status_code == 200
    serials = [f"STICKY-{i:05d}" for i in range(10_000)]
    on_stream = [s for s in serials if fnv1a(s) % 10000 < 3000]
    assert abs(len(on_stream) / len(serials) - 0.3) <= 0.02

    def path_of(sn, session):
        body = json.dumps({"deviceSn": sn, "heartRate": 70, "timestamp": BASE_S})
        r = session.post(stack.url + "/upload_health_data", data=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["status"]

    sample = serials[:600]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sessions = [requests.Session() for _ in range(8)]
        first = list(pool.map(lambda a: path_of(a[1], sessions[a[0] % 8]), enumerate(sample)))
        again = list(pool.map(lambda a: path_of(a[1], sessions[a[0] % 8]), enumerate(sample)))
    assert first == again       # every serial takes the same path each time
    expected = ["accepted" if fnv1a(s) % 10000 < 3000 else "success" for s in sample]
    assert first == expected    # and the one the published hash rule gives


def test_ratio_change_reaches_a_second_instance_within_a_second(stack):
    first = stack.url
    stack.producer()
    stack.http_port = __import__("conftest").free_port()
    stack.url = f"http://127.0.0.1:{stack.http_port}"
    stack.producer()
    second = stack.url
    assert get_ratio(second) == 0
    resp = set_ratio(stack, 0.42, url=first)
    changed = time.monotonic()
    assert resp.json() == {"success": True, "old_ratio": 0, "new_ratio": 0.42,
                           "legacy_path": "on",
                           "message": "traffic ratio changed from 0 to 0.42"}
    wait_for(lambda: get_ratio(second) == 0.42, timeout=1.0, interval=0.02,
             what="the second instance to see the new ratio")
    assert time.monotonic() - changed < 1.0


def test_emergency_rollback_sets_0_everywhere_and_is_audited(stack):
    stack.producer()
    before = time.time()
    assert set_ratio(stack, 0.5).status_code == 200
    resp = requests.post(stack.url + "/api/emergency_rollback", timeout=5)
    assert resp.status_code == 200
    body = resp.json()
    assert body["success"] is True and body["traffic_ratio"] == 0 and body["old_ratio"] == 0.5
    assert body["rollback_time"].endswith("+00:00")
    assert get_ratio(stack.url) == 0
    assert stack.s.redis().get(stack.prefix + "stream_traffic_ratio") == "0"
    def audit():
        return stack.s.sql("SELECT old_ratio, new_ratio, caller, reason FROM t_stream_ratio_audit"
                           " WHERE changed_at >= to_timestamp(%s) ORDER BY id", (before - 1,))
    wait_for(lambda: (0.5, 0.0, "127.0.0.1", "emergency_rollback") in audit(),
             what="the rollback's audit row")
    assert (0.0, 0.5, "127.0.0.1", "ratio_change") in audit()


def test_bad_ratio_is_refused(stack):
    stack.producer()
    for bad in (1.5, -0.1, "abc", None):
        resp = set_ratio(stack, bad)
        assert resp.status_code == 400 and resp.json()["success"] is False
    resp = requests.post(stack.url + "/api/stream_traffic_ratio", data="{", timeout=5)
    assert resp.status_code == 400
    assert get_ratio(stack.url) == 0


def test_admin_calls_need_the_token_when_one_is_set(stack):
    stack.producer(LJ_ADMIN_TOKEN="s3cret-admin")
    assert set_ratio(stack, 0.2).status_code == 401
    assert set_ratio(stack, 0.2, {"Authorization": "Bearer wrong"}).status_code == 403
    assert set_ratio(stack, 0.2, {"Authorization": "Bearer s3cret-admi"}).status_code == 403
    assert requests.post(stack.url + "/api/emergency_rollback", timeout=5).status_code == 401
    assert requests.get(stack.url + "/api/trace/1-1", timeout=5).status_code == 401
    assert get_ratio(stack.url) == 0
    ok = set_ratio(stack, 0.2, {"Authorization": "Bearer s3cret-admin"})
    assert ok.status_code == 200 and ok.json()["new_ratio"] == 0.2
    assert "s3cret" not in stack.procs[0].output()


FORWARDING_HEADERS = ("Forwarded", "Via", "X-Forwarded-For", "X-Forwarded-Host",
                      "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-IP", "X-Client-IP",
                      "X-Cluster-Client-IP", "True-Client-IP", "CF-Connecting-IP")


def test_proxied_admin_calls_are_refused_when_no_token_is_set(stack):
    """A reverse proxy on the host makes every client loopback: without a token
    an admin call that carries a forwarding header is refused (docs/security.md)."""
    prod = stack.producer()
    for name in FORWARDING_HEADERS + ("x-forwarded-for",):
        resp = set_ratio(stack, 0.3, {name: "203.0.113.7"})
        assert resp.status_code == 403, name
        assert "token" in resp.json()["message"] and "proxied" in resp.json()["message"], name
    fwd = {"X-Forwarded-For": "203.0.113.7"}
    assert requests.post(stack.url + "/api/emergency_rollback", headers=fwd,
                         timeout=5).status_code == 403
    assert requests.get(stack.url + "/api/trace/1-1", headers={"Forwarded": "for=192.0.2.1"},
                        timeout=5).status_code == 403
    assert get_ratio(stack.url) == 0
    assert "refused proxied admin call" in prod.output()
    # Non-admin endpoints do not care, and the next request on the same
    # connection without the header is a plain loopback call again.
    with requests.Session() as s:
        assert s.get(stack.url + "/api/stream_traffic_ratio", headers=fwd,
                     timeout=5).status_code == 200
        resp = s.post(stack.url + "/api/stream_traffic_ratio", data=json.dumps({"ratio": 0.3}),
                      timeout=5)
        assert resp.status_code == 200 and resp.json()["new_ratio"] == 0.3
    sn = serial("fwd")
    assert stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 70},
                      headers=fwd).status_code == 200


def test_proxied_admin_calls_are_decided_by_the_token_when_one_is_set(stack):
    stack.producer(LJ_ADMIN_TOKEN="s3cret-proxied")
    fwd = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7"}
    assert set_ratio(stack, 0.4, fwd).status_code == 401
    assert set_ratio(stack, 0.4, dict(fwd, Authorization="Bearer wrong")).status_code == 403
    assert get_ratio(stack.url) == 0
    ok = set_ratio(stack, 0.4, dict(fwd, Authorization="Bearer s3cret-proxied"))
    assert ok.status_code == 200 and ok.json()["new_ratio"] == 0.4


# -- device info and events ----------------------------------------------------------------

def test_device_info_and_events_flow_to_their_tables(stack):
    stack.producer()
    stack.consumer()
    sn = serial("dev")
    resp = stack.post("/upload_device_info_v2", {"SerialNumber": sn, "batteryLevel": 55,
                                                  "wearState": "off", "network": "wifi"})
    assert resp.status_code == 200 and resp.json()["status"] == "accepted", resp.text
    resp = stack.post("/upload_common_event_v2", {"deviceSn": sn, "eventType": "SOS",
                                                   "timestamp": BASE_S})
    assert resp.status_code == 200 and resp.json()["stream_id"], resp.text
    wait_for(lambda: stack.s.sql("SELECT battery_level, wear_state, info->>'network'"
                                 " FROM t_device_info WHERE device_sn = %s", (sn,))
             == [(55, "off", "wifi")], what="device info row")
    wait_for(lambda: stack.s.sql("SELECT level FROM t_alert_info WHERE device_sn = %s"
                                 " AND alert_type = 'SOS'", (sn,)) == [("critical",)],
             what="SOS alert")
    assert stack.post("/upload_device_info_v2", {"batteryLevel": 5}).status_code == 400
    assert stack.post("/upload_common_event_v2", {"deviceSn": sn}).status_code == 400


# -- operations endpoints ----------------------------------------------------------------------

def test_operations_endpoints(stack):
    stack.producer()
    stack.consumer()
    sn = serial("ops")
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn, "heartRate": 70}).ok
    assert stack.post("/upload_health_data", {"deviceSn": sn + "x", "heartRate": 70}).ok
    health = requests.get(stack.url + "/api/health", timeout=5).json()
    assert health["status"] == "healthy" and health["redis"] and health["postgres"]
    metrics = requests.get(stack.url + "/api/stream_metrics", timeout=5).json()
    for path in ("stream", "traditional"):
        s = metrics["summary"][path]
        assert s["requests"] == 1 and s["error_rate"] == 0
        assert s["avg_response_time"] > 0 and s["p95_response_time"] > 0
    assert metrics["duration_seconds"] > 0 and metrics["timestamp"]
    wait_for(lambda: rows(stack, sn), what="the stream row")
    stats = requests.get(stack.url + "/api/stream_stats", timeout=5).json()
    health_stream = stats["streams"][stack.stream()]
    assert health_stream["length"] >= 1 and health_stream["dead_letters"] == 0
    group = health_stream["groups"][0]
    assert group["name"] == stack.prefix + "health_processors"
    assert group["consumers"][0]["idle_ms"] >= 0
    today = requests.get(stack.url + "/api/stats", timeout=5).json()
    assert today["records_today"] >= 2 and today["active_devices"] >= 2
    prom = requests.get(stack.url + "/metrics", timeout=5)
    assert prom.headers["Content-Type"].startswith("text/plain")
    assert 'ljwx_http_requests_total{path="/upload_health_data_v2",status="2xx"} 1' in prom.text
    assert 'ljwx_uploads_total{path="traditional",outcome="ok"} 1' in prom.text
    assert "ljwx_open_connections 1" in prom.text


# -- limits and timeouts ---------------------------------------------------------------------------

def raw(stack, payload, wait=5.0):
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=wait) as s:
        s.sendall(payload)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        return data


def test_too_many_records_gets_413_and_stores_nothing(stack):
    stack.producer(LJ_MAX_RECORDS=10)
    sn = serial("many")
    records = [{"deviceSn": sn, "timestamp": BASE_S + i} for i in range(11)]
    resp = stack.post("/upload_health_data_v2", records)
    assert resp.status_code == 413
    assert stack.s.redis().exists(stack.stream()) == 0


def test_slow_headers_get_408_and_idle_connections_are_closed(stack):
    stack.producer(LJ_HEADER_TIMEOUT_MS=400, LJ_KEEPALIVE_MS=300)
    t0 = time.monotonic()
    data = raw(stack, b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\n")
    assert data.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - t0 < 4
    t0 = time.monotonic()
    assert raw(stack, b"") == b""       # idle: closed without a word
    assert time.monotonic() - t0 < 4


def test_connections_beyond_the_cap_wait_for_a_free_slot(stack):
    stack.producer(LJ_MAX_CONNECTIONS=2, LJ_KEEPALIVE_MS=60000)
    holders = [socket.create_connection(("127.0.0.1", stack.http_port)) for _ in range(2)]
    waiting = socket.create_connection(("127.0.0.1", stack.http_port), timeout=1.0)
    waiting.sendall(b"GET /api/stream_traffic_ratio HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        waiting.recv(100)
        raise AssertionError("a third connection was served beyond the cap")
    except socket.timeout:
        pass
    holders[0].close()
    waiting.settimeout(5)
    assert waiting.recv(100).startswith(b"HTTP/1.1 200 ")
    waiting.close()
    holders[1].close()


# -- Redis outage ----------------------------------------------------------------------------------

def test_redis_down_routed_uploads_fall_back_and_v2_gets_503(stack, servers):
    stack.producer()
    assert set_ratio(stack, 1).status_code == 200
    servers.stop_redis()
    try:
        sn = serial("fallback")
        wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
                 is False, what="the producer to see Redis down")
        resp = stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 70})
        assert resp.status_code == 200 and resp.json()["status"] == "success"
        assert rows(stack, sn) == [("optimized",)]
        resp = stack.post("/upload_health_data_v2", {"deviceSn": sn, "heartRate": 71,
                                                     "timestamp": BASE_S})
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
        assert len(rows(stack, sn)) == 1
        servers.stop_pg()
        try:
            resp = stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 72,
                                                      "timestamp": BASE_S + 1})
            assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
        finally:
            servers.start_pg()
    finally:
        servers.start_redis()
    sn2 = serial("resumed")
    wait_for(lambda: stack.post("/upload_health_data", {"deviceSn": sn2, "heartRate": 70})
             .json().get("status") == "accepted", timeout=15, what="the stream path to resume")


# -- backpressure ------------------------------------------------------------------------------------

def test_backpressure_answers_503_before_anything_is_lost(stack):
    stack.producer(LJ_STREAM_HIGH_WATERMARK=5, LJ_RATIO_REFRESH_MS=50)
    sn = serial("full")
    accepted = []
    for i in range(40):
        resp = stack.post("/upload_health_data_v2", {"deviceSn": sn, "timestamp": BASE_S + i})
        if resp.status_code == 503:
            assert resp.headers["Retry-After"]
            break
        assert resp.status_code == 200
        accepted.append(resp.json()["stream_id"])
        time.sleep(0.02)
    else:
        raise AssertionError("no 503 although nothing drains the stream")
    assert 5 <= len(accepted) <= 10
    assert [e[0] for e in stack.s.redis().xrange(stack.stream())] == accepted
    # A routed upload takes the legacy path instead of the full stream.
    assert set_ratio(stack, 1).status_code == 200
    wait_for(lambda: get_ratio(stack.url) == 1, what="ratio")
    resp = stack.post("/upload_health_data", {"deviceSn": sn, "timestamp": BASE_S + 100})
    assert resp.status_code == 200 and resp.json()["status"] == "success"
    # Draining (and trimming) reopens the stream; every accepted upload is stored.
    stack.consumer(LJ_UPKEEP_INTERVAL_MS=100)
    wait_for(lambda: len(rows(stack, sn)) == len(accepted) + 1, what="every accepted upload")
    wait_for(lambda: stack.post("/upload_health_data_v2", {"deviceSn": sn}).status_code == 200,
             what="the stream to accept again")
    prom = requests.get(stack.url + "/metrics", timeout=5).text
    assert "ljwx_backpressure_total 0" not in prom


def test_several_event_loops_share_one_port(stack):
    stack.producer(LJ_THREADS=3)
    stack.consumer()
    sn = serial("loops")

    def one(i):
        # A new connection each time, so the kernel spreads them over the loops.
        r = requests.post(stack.url + "/upload_health_data_v2", timeout=10,
                          data=json.dumps({"deviceSn": sn, "timestamp": BASE_S + i}))
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(60))) == {200}
    wait_for(lambda: len(rows(stack, sn)) == 60, what="60 rows")
    assert "threads=3" in stack.procs[0].output()


def test_header_and_chunk_limits(stack):
    stack.producer(LJ_MAX_BODY_BYTES=1000)
    long_line = b"POST /upload_health_data_v2?" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw(stack, long_line).startswith(b"HTTP/1.1 414 ")
    big_header = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 +
                  b"\r\nContent-Length: 2\r\n\r\n{}")
    assert raw(stack, big_header).startswith(b"HTTP/1.1 431 ")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(70))
    flood = b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    assert raw(stack, flood).startswith(b"HTTP/1.1 431 ")
    chunk = b"x" * 900
    chunked = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n" + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    assert raw(stack, chunked).startswith(b"HTTP/1.1 413 ")
    huge_chunk = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                  b"\r\n\r\n8000000000000000\r\nxx")
    assert raw(stack, huge_chunk).startswith(b"HTTP/1.1 413 ")
    gzip = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert raw(stack, gzip).startswith(b"HTTP/1.1 501 ")
    both = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked"
            b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert raw(stack, both).startswith(b"HTTP/1.1 501 ")
    upper = (b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked"
             b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert raw(stack, upper).startswith(b"HTTP/1.1 400 ")     # parsed, but {} holds no record
    no_length = b"POST /upload_health_data_v2 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw(stack, no_length).startswith(b"HTTP/1.1 411 ")
    assert stack.s.redis().exists(stack.stream()) == 0


def test_ten_thousand_keep_alive_connections_are_held(stack):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 12_000:
        pytest.skip(f"this machine allows {hard} open files, fewer than the test needs")
    if soft < 12_000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    stack.producer(LJ_KEEPALIVE_MS=120_000)
    socks = []
    try:
        for _ in range(10_000):
            socks.append(socket.create_connection(("127.0.0.1", stack.http_port), timeout=10))
        def open_connections():
            text = requests.get(stack.url + "/metrics", timeout=10).text
            return int(re.search(r"^ljwx_open_connections (\d+)$", text, re.M).group(1))
        # 10,000 held plus the one asking.
        wait_for(lambda: open_connections() == 10_001, timeout=30, what="10,000 connections")
        req = b"GET /api/stream_traffic_ratio HTTP/1.1\r\nHost: x\r\n\r\n"
        for s in socks[::500]:      # a sample, spread over the whole set
            s.sendall(req)
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in socks:
            s.close()


def test_expect_100_continue_is_answered_at_once(stack):
    import subprocess
    stack.producer()
    sn = serial("expect")
    records = [{"deviceSn": sn, "heartRate": 70, "timestamp": BASE_S + i} for i in range(60)]
    body = json.dumps({"data": records})
    assert len(body) > 2048     # curl sends "Expect: 100-continue" for such bodies
    t0 = time.monotonic()
    out = subprocess.run(["curl", "-s", "-v", "-X", "POST", "-H", "Expect: 100-continue",
                          "--data-binary", body, stack.url + "/upload_health_data_v2"],
                         capture_output=True, text=True, timeout=10)
    assert "HTTP/1.1 100 Continue" in out.stderr
    assert json.loads(out.stdout)["accepted"] == 60
    assert time.monotonic() - t0 < 0.9     # curl would otherwise wait a second


def test_redis_that_stops_answering_does_not_hold_uploads(stack, servers):
    stack.producer(LJ_REDIS_TIMEOUT_MS=500)
    assert set_ratio(stack, 1).status_code == 200
    wait_for(lambda: get_ratio(stack.url) == 1, what="ratio")
    sn = serial("hung")
    servers.redis_proc.send_signal(__import__("signal").SIGSTOP)
    try:
        t0 = time.monotonic()
        resp = stack.post("/upload_health_data_v2", {"deviceSn": sn, "timestamp": BASE_S})
        assert resp.status_code == 503
        assert time.monotonic() - t0 < 3
        resp = stack.post("/upload_health_data", {"deviceSn": sn, "timestamp": BASE_S + 1})
        assert resp.status_code == 200 and resp.json()["status"] == "success"
    finally:
        servers.redis_proc.send_signal(__import__("signal").SIGCONT)
    wait_for(lambda: stack.post("/upload_health_data_v2", {"deviceSn": sn}).status_code == 200,
             timeout=15, what="the stream path to come back")
    assert "did not answer within 500 ms" in stack.procs[0].output()


def test_admin_calls_work_as_plain_curl_posts_without_a_body(stack):
    import subprocess
    stack.producer()
    assert set_ratio(stack, 0.3).status_code == 200
    out = subprocess.run(["curl", "-s", "-X", "POST", stack.url + "/api/emergency_rollback"],
                         capture_output=True, text=True, timeout=10)
    body = json.loads(out.stdout)
    assert body["success"] is True and body["traffic_ratio"] == 0
    assert get_ratio(stack.url) == 0
    # Uploads still need a length.
    assert raw(stack, b"POST /upload_health_data HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 411 ")


def test_ratio_may_come_as_a_form_or_query_parameter(stack):
    stack.producer()
    resp = requests.post(stack.url + "/api/stream_traffic_ratio", data="ratio=0.25",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    assert resp.status_code == 200 and resp.json()["new_ratio"] == 0.25
    resp = requests.post(stack.url + "/api/stream_traffic_ratio?ratio=0.5", timeout=5)
    assert resp.status_code == 200 and resp.json()["new_ratio"] == 0.5
    for bad in ("ratio=2", "ratio=", "ratio=x", "other=1"):
        assert requests.post(stack.url + "/api/stream_traffic_ratio", data=bad,
                             timeout=5).status_code == 400

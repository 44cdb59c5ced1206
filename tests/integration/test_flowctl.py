"""Flow control (issue 11): per-device and per-address token buckets, the
in-flight cap and the circuit breakers, against real Redis and PostgreSQL."""
import json
import os
import re
import signal
import threading
import time
import uuid

import requests

from conftest import metric, reading, wait_for

BASE_S = 1_700_000_000


def flow(stack):
    return requests.get(stack.url + "/api/stream_metrics", timeout=5).json()["flow_control"]


def set_ratio(stack, ratio):
    requests.post(stack.url + "/api/stream_traffic_ratio", data=json.dumps({"ratio": ratio}),
                  timeout=5).raise_for_status()
    wait_for(lambda: requests.get(stack.url + "/api/stream_traffic_ratio", timeout=5)
             .json()["current_ratio"] == ratio, what=f"ratio {ratio}")


def stored(servers, sn_like):
    return servers.sql("SELECT device_sn, ts FROM t_user_health_data WHERE device_sn LIKE %s",
                       (sn_like,))


def test_a_flooding_device_gets_429_while_100_others_are_all_stored(stack, servers):
    stack.producer(LJ_DEVICE_RATE=5, LJ_DEVICE_BURST=20, LJ_THREADS=2)
    stack.consumer()
    tag = uuid.uuid4().hex[:6]
    flooder = f"FLOOD{tag}"
    flood, others = {}, {}

    def flood_run():
        s = requests.Session()
        for i in range(150):                    # 50/s for 3 s: 10x the limit
            r = s.post(stack.url + "/upload_health_data_v2",
                       data=json.dumps(reading(flooder, BASE_S + i)), timeout=10)
            flood[i] = r
            time.sleep(0.02)

    def others_run():
        s = requests.Session()
        for round_ in range(2):
            for d in range(100):
                sn = f"CALM{tag}-{d:03d}"
                r = s.post(stack.url + "/upload_health_data_v2",
                           data=json.dumps(reading(sn, BASE_S + round_)), timeout=10)
                others[(sn, round_)] = r.status_code
            time.sleep(1.0)

    threads = [threading.Thread(target=flood_run), threading.Thread(target=others_run)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start

    assert set(others.values()) == {200}, others
    ok = [i for i, r in flood.items() if r.status_code == 200]
    limited = [r for r in flood.values() if r.status_code == 429]
    assert len(ok) + len(limited) == 150
    # burst 20 plus 5/s refill over the run, and clearly fewer than sent
    assert 20 <= len(ok) <= 20 + 5 * elapsed + 2, (len(ok), elapsed)
    r = limited[0]
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["limit"] == "device" and "rate limit" in body["message"]
    assert body["accepted"] == 0 and body["errors"][0]["reason"] == "rate_limited"

    # Every accepted upload is stored, none of the refused ones.
    wait_for(lambda: len(stored(servers, f"CALM{tag}-%")) == 200, timeout=20,
             what="the 100 calm devices' rows")
    wait_for(lambda: len(stored(servers, flooder)) == len(ok), timeout=20,
             what="the flooder's accepted rows")
    assert {int(ts.timestamp()) for _, ts in stored(servers, flooder)} == {BASE_S + i for i in ok}

    fc = flow(stack)
    assert fc["device_limit"]["rate_per_s"] == 5 and fc["device_limit"]["burst"] == 20
    assert fc["rate_limited_uploads"] == len(limited)
    assert metric(stack, "ljwx_rate_limited_uploads_total", '{limit="device"}') == len(limited)


def test_a_batch_rejects_only_the_limited_devices_records(stack, servers):
    stack.producer(LJ_DEVICE_RATE=1, LJ_DEVICE_BURST=1)
    stack.consumer()
    tag = uuid.uuid4().hex[:6]
    busy, fresh = f"BUSY{tag}", f"FRESH{tag}"
    assert stack.post("/upload_health_data_v2", reading(busy, BASE_S)).status_code == 200

    batch = {"data": [reading(busy, BASE_S + 1), reading(fresh, BASE_S + 1),
                      reading(busy, BASE_S + 2), {"deviceSn": fresh, "heartRate": 999},
                      reading(fresh, BASE_S + 2)]}
    r = stack.post("/upload_health_data_v2", batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 3
    assert [(e["index"], e["reason"] == "rate_limited") for e in body["errors"]] == [
        (0, True), (2, True), (3, False)]

    # Only limited devices left: 429 for the whole upload.
    r = stack.post("/upload_health_data_v2", {"data": [reading(busy, BASE_S + 3),
                                                       reading(fresh, BASE_S + 3)]})
    assert r.status_code == 429 and "Retry-After" in r.headers
    # Device reports share the device's bucket.
    r = stack.post("/upload_device_info_v2", {"SerialNumber": busy, "batteryLevel": 50})
    assert r.status_code == 429 and r.json()["limit"] == "device"

    wait_for(lambda: len(stored(servers, f"%{tag}")) == 3, timeout=20, what="3 rows")
    time.sleep(0.5)
    rows = sorted((sn, int(ts.timestamp())) for sn, ts in stored(servers, f"%{tag}"))
    assert rows == [(busy, BASE_S), (fresh, BASE_S + 1), (fresh, BASE_S + 2)]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_bucket_memory_stays_bounded_with_100000_serials(stack):
    producer = stack.producer(LJ_DEVICE_RATE=5, LJ_RATE_TABLE_SLOTS=4096,
                              ASAN_OPTIONS="detect_leaks=1:exitcode=86:quarantine_size_mb=0")
    tag = uuid.uuid4().hex[:6]
    s = requests.Session()

    def send(first, count):
        for b in range(first, first + count):
            recs = [reading(f"M{tag}-{b * 1000 + i}", BASE_S) for i in range(1000)]
            r = s.post(stack.url + "/upload_health_data_v2", data=json.dumps(recs), timeout=30)
            assert r.status_code == 200 and r.json()["accepted"] == 1000, r.text[:300]

    send(0, 10)                                 # warm up: 10,000 serials
    before = rss_kib(producer.p.pid)
    send(10, 90)                                # 90,000 more
    after = rss_kib(producer.p.pid)
    lim = flow(stack)["device_limit"]
    assert lim["slots"] == 4096
    assert lim["tracked"] <= 4096
    assert metric(stack, "ljwx_rate_tracked_keys", '{limit="device"}') <= 4096
    assert after - before < 8 * 1024, (before, after)


def test_address_limit_is_off_by_default_and_429_when_set(stack):
    stack.producer(LJ_ADDR_RATE=1, LJ_ADDR_BURST=3)
    statuses = [stack.post("/upload_health_data_v2", reading(f"A{i}", BASE_S)).status_code
                for i in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    r = stack.post("/upload_common_event_v2", {"deviceSn": "A9", "eventType": "SOS"})
    assert r.status_code == 429 and r.json()["limit"] == "address"
    assert metric(stack, "ljwx_rate_limited_uploads_total", '{limit="address"}') >= 2
    assert flow(stack)["address_limit"]["rate_per_s"] == 1


def redis_frozen(servers):
    """SIGSTOP: Redis accepts connections but never answers -- the case where
    requests would otherwise each wait for the reply deadline."""
    class Frozen:
        def __enter__(self):
            servers.redis_proc.send_signal(signal.SIGSTOP)

        def __exit__(self, *exc):
            servers.redis_proc.send_signal(signal.SIGCONT)
    return Frozen()


def timed_post(stack, path, body):
    t = time.monotonic()
    r = stack.post(path, body)
    return r, time.monotonic() - t


def test_redis_breaker_opens_fails_fast_falls_back_and_closes(stack, servers):
    stack.producer(LJ_BREAKER_FAILURES=3, LJ_BREAKER_COOLDOWN_MS=500,
                   LJ_BREAKER_MAX_COOLDOWN_MS=1000, LJ_REDIS_TIMEOUT_MS=400,
                   LJ_RATIO_REFRESH_MS=100)
    stack.consumer()
    set_ratio(stack, 1.0)
    tag = uuid.uuid4().hex[:6]
    with redis_frozen(servers):
        slow = [timed_post(stack, "/upload_health_data_v2", reading(f"B{tag}", BASE_S + i))
                for i in range(3)]
        assert all(r.status_code == 503 for r, _ in slow)
        assert metric(stack, "ljwx_breaker_state", '{dependency="redis"}') == 1
        fast = [timed_post(stack, "/upload_health_data_v2", reading(f"B{tag}", BASE_S + 10 + i))
                for i in range(5)]
        assert all(r.status_code == 503 and "Retry-After" in r.headers for r, _ in fast)
        assert max(t for _, t in fast) < 0.05, [t for _, t in fast]
        # Routed uploads go straight to the legacy path, stored at once.
        routed = [stack.post("/upload_health_data", reading(f"R{tag}", BASE_S + i))
                  for i in range(5)]
        assert [r.json()["status"] for r in routed] == ["success"] * 5
        assert len(stored(servers, f"R{tag}")) == 5
        assert flow(stack)["breakers"]["redis"]["state"] in ("open", "half_open")
    # Redis back: a probe closes the breaker and the stream path resumes.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = stack.post("/upload_health_data_v2", reading(f"C{tag}", BASE_S))
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert metric(stack, "ljwx_breaker_state", '{dependency="redis"}') == 0
    r = stack.post("/upload_health_data", reading(f"R{tag}", BASE_S + 99))
    assert r.json()["status"] == "accepted"
    health = requests.get(stack.url + "/api/stream_health", timeout=5).json()
    assert health["flow_control"]["breakers"]["redis"]["state"] == "closed"
    assert health["flow_control"]["breakers"]["redis"]["opens"] >= 1
    log = stack.procs[0].output()
    assert "redis: closed -> open" in log and "half_open -> closed" in log


def test_postgres_breaker_answers_legacy_uploads_503_fast_then_closes(stack, servers):
    stack.producer(LJ_BREAKER_FAILURES=2, LJ_BREAKER_COOLDOWN_MS=300,
                   LJ_BREAKER_MAX_COOLDOWN_MS=600)
    tag = uuid.uuid4().hex[:6]
    servers.stop_pg()
    try:
        for i in range(2):
            assert stack.post("/upload_health_data", reading(f"P{tag}", BASE_S + i)).status_code == 503
        assert metric(stack, "ljwx_breaker_state", '{dependency="postgres"}') == 1
        r, t = timed_post(stack, "/upload_health_data", reading(f"P{tag}", BASE_S + 5))
        assert r.status_code == 503 and "circuit open" in r.json()["message"] and t < 0.05
    finally:
        servers.start_pg()
    wait_for(lambda: stack.post("/upload_health_data",
                                reading(f"P{tag}", BASE_S + 9)).status_code == 200,
             timeout=15, interval=0.2, what="the legacy path back")
    assert metric(stack, "ljwx_breaker_state", '{dependency="postgres"}') == 0
    assert len(stored(servers, f"P{tag}")) == 1


def test_inflight_cap_answers_503_at_once(stack, servers):
    stack.producer(LJ_MAX_INFLIGHT=2, LJ_BREAKER_FAILURES=0, LJ_REDIS_TIMEOUT_MS=5000)
    tag = uuid.uuid4().hex[:6]
    results = []

    def slow_upload(i):
        results.append(stack.post("/upload_health_data_v2", reading(f"I{tag}{i}", BASE_S)))

    with redis_frozen(servers):
        waiting = [threading.Thread(target=slow_upload, args=(i,)) for i in range(2)]
        for t in waiting:
            t.start()
        wait_for(lambda: flow(stack)["inflight"] == 2, what="two uploads in flight")
        r, t = timed_post(stack, "/upload_health_data_v2", reading(f"I{tag}x", BASE_S))
        assert r.status_code == 503 and "in flight" in r.json()["message"] and t < 0.05
        assert r.headers["Retry-After"] == "1"
    for t in waiting:
        t.join(10)
    assert [r.status_code for r in results] == [200, 200]
    assert flow(stack)["inflight"] == 0
    assert metric(stack, "ljwx_inflight_refused_total") == 1

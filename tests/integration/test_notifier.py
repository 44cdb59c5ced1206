"""Alert delivery (issue 17, docs/alerts.md): ljwx-notifier against a real
local HTTP receiver that records every request and answers as the test
scripts it.

"Once" is judged as a receiver would: it dedups on the Idempotency-Key, so
a delivery counts once per alert id; and after the receiver has answered
one POST of an alert with 2xx, no further POST of that alert may arrive.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import TOP, wait_for

ROBOT_OK = (200, {}, b'{"errcode":0,"errmsg":"ok"}', 0)


def serial(tag):
    return f"NT-{tag}-{uuid.uuid4().hex[:10]}"


def now_ms():
    return int(time.time() * 1000)


class Receiver:
    """A threaded HTTP server on a loopback port. 'script(req)' returns
    (status, headers, body, delay_s) for each request; every request is
    recorded with the time its answer was sent."""

    def __init__(self, script=None):
        # Bound, not listening, until up(): connections are refused, and no
        # other process (nor a connect's own ephemeral port) can take it.
        self.hold = socket.socket()
        self.hold.bind(("127.0.0.1", 0))
        self.port = self.hold.getsockname()[1]
        self.script = script or (lambda req: (200, {}, b'{"ok":true}', 0))
        self.requests = []
        self.lock = threading.Lock()
        self.server = None

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def up(self):
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                body = self.rfile.read(n)
                req = {"path": self.path, "headers": dict(self.headers), "body": body,
                       "t": time.monotonic()}
                try:
                    req["json"] = json.loads(body)
                except ValueError:
                    req["json"] = None
                status, headers, out, delay = rec.script(req)
                if delay:
                    time.sleep(delay)
                req["status"] = status
                req["answered"] = time.monotonic()
                with rec.lock:
                    rec.requests.append(req)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass        # the notifier gave up waiting (a timeout test)

        ThreadingHTTPServer.allow_reuse_address = True
        self.hold.close()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def down(self):
        self.hold.close()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def of(self, sn, path=None):
        """Requests whose body names device 'sn' (on 'path')."""
        with self.lock:
            reqs = list(self.requests)
        return [r for r in reqs if sn.encode() in r["body"] and (path is None or
                                                                  r["path"] == path)]


@pytest.fixture
def receiver():
    """Makes Receivers (listening unless up=False); stops them after the test."""
    made = []

    def make(script=None, up=True):
        rx = Receiver(script)
        made.append(rx)
        return rx.up() if up else rx
    yield make
    for rx in made:
        rx.down()


@pytest.fixture
def pipeline(stack, servers):
    """A producer and a consumer, and an outbox with no other test's alerts."""
    quiet_outbox(servers)
    stack.producer()
    stack.consumer()
    return stack


def start_notifier(stack, **env):
    base = {"LJ_NOTIFY_STATUS_PORT": "0", "LJ_NOTIFY_POLL_MS": "100",
            "LJ_NOTIFY_BACKOFF_MS": "200", "LJ_NOTIFY_BACKOFF_MAX_MS": "1000",
            "LJ_NOTIFY_TIMEOUT_MS": "2000", "LJ_NOTIFY_CONNECT_TIMEOUT_MS": "1000",
            "LJ_NOTIFY_LEASE_MS": "60000"}
    base.update({k: str(v) for k, v in env.items()})
    return stack._start("ljwx-notifier", [], stack.env(**base))


def quiet_outbox(servers):
    """Alerts other tests left NEW would be delivered to this test's
    receiver: expire them first (as --notify-max-age-s would)."""
    servers.sql("UPDATE t_alert_info SET status = 'EXPIRED' WHERE status = 'NEW'")


def alert_ids(stack, sn):
    return [r[0] for r in stack.s.sql(
        "SELECT id FROM t_alert_info WHERE device_sn = %s ORDER BY id", (sn,))]


def status_of(stack, alert_id):
    return stack.s.sql("SELECT status FROM t_alert_info WHERE id = %s", (alert_id,))[0][0]


def deliveries(stack, alert_id):
    return stack.s.sql("SELECT channel, attempts, status, last_error FROM t_alert_delivery"
                       " WHERE alert_id = %s ORDER BY channel", (alert_id,))


def status_port(proc):
    m = wait_for(lambda: re.search(r"status port on http://127\.0\.0\.1:(\d+)", proc.output()),
                 what="the notifier's status port")
    return int(m.group(1))


def metric_value(text, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def post_reading(stack, sn, hr, ts=None):
    body = {"data": {"deviceSn": sn, "heartRate": hr, "timestamp": ts or now_ms()}}
    assert stack.post("/upload_health_data_v2", body).status_code == 200


def alerts_of_devices(stack, tag, n):
    """One upload with an alert-raising reading for each of 'n' new devices;
    returns their serials once the 'n' alerts are stored."""
    sns = [serial(f"{tag}{i}") for i in range(n)]
    body = {"data": [{"deviceSn": s, "heartRate": 150, "timestamp": now_ms()} for s in sns]}
    assert stack.post("/upload_health_data_v2", body).status_code == 200
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = ANY(%s)",
                                 (sns,))[0][0] == n, timeout=10, what=f"{n} alerts")
    return sns


def post_sos(stack, sn):
    body = {"deviceSn": sn, "eventType": "SOS", "timestamp": now_ms()}
    assert stack.post("/upload_common_event_v2", body).status_code == 200


def test_heart_rate_and_sos_each_reach_the_webhook_once_within_5s(pipeline, receiver):
    rx = receiver()
    notifier = start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url("/hook?key=topsecret-42"))
    sn = serial("hr")
    t0 = time.monotonic()
    post_reading(pipeline, sn, 150)
    post_sos(pipeline, sn)
    got = wait_for(lambda: len(rx.of(sn)) >= 2 and rx.of(sn), timeout=5,
                   what="two POSTs (heart rate, SOS) naming the device")
    assert max(r["answered"] for r in got) - t0 < 5
    time.sleep(1.0)
    got = rx.of(sn)
    assert len(got) == 2, got
    ids = alert_ids(pipeline, sn)
    by_type = {r["json"]["type"]: r for r in got}
    assert set(by_type) == {"heart_rate", "SOS"}
    hr = by_type["heart_rate"]["json"]
    assert hr["device_sn"] == sn and hr["value"] == 150 and hr["level"] == "major"
    assert set(hr) >= {"id", "device_sn", "user", "org", "type", "value", "level", "time"}
    assert by_type["SOS"]["json"]["level"] == "critical"
    assert sorted(int(r["headers"]["Idempotency-Key"]) for r in got) == ids
    assert sorted(r["json"]["id"] for r in got) == ids
    for i in ids:
        assert status_of(pipeline, i) == "NOTIFIED"
        assert deliveries(pipeline, i) == [("webhook", 1, "DELIVERED", None)]
    text = requests.get(f"http://127.0.0.1:{status_port(notifier)}/metrics", timeout=5).text
    assert metric_value(text, "ljwx_notifier_delivered_total", '{channel="webhook"}') >= 2
    assert "topsecret-42" not in notifier.output()     # the URL's key is never logged
    assert f"127.0.0.1:{rx.port}" in notifier.output()


def test_consumer_killed_after_commit_before_xack_still_delivers_once(stack, servers, receiver):
    quiet_outbox(servers)
    rx = receiver()
    sn = serial("kill")
    stack.producer()
    first = stack.consumer(LJ_TEST_KILL_AFTER_COMMIT_SN=sn)
    post_reading(stack, sn, 160)
    wait_for(lambda: not first.alive(), timeout=10, what="the consumer to be killed")
    stack.procs.remove(first)           # killed on purpose
    assert first.p.returncode == -signal.SIGKILL
    ids = alert_ids(stack, sn)
    assert len(ids) == 1                # committed with its reading ...
    published = stack.s.redis().xrange(stack.prefix + "alert_stream")
    assert not [e for e in published if e[1].get("device_sn") == sn]  # ... never published
    start_notifier(stack, LJ_ALERT_WEBHOOK_URL=rx.url())
    stack.consumer()                    # redelivers the entry: no second alert
    wait_for(lambda: rx.of(sn), timeout=10, what="the alert's delivery")
    wait_for(lambda: stack.s.redis().xpending(stack.stream(),
                                              stack.prefix + "health_processors")
             ["pending"] == 0, timeout=15, what="the entry to be acknowledged")
    time.sleep(1.0)
    assert len(rx.of(sn)) == 1
    assert alert_ids(stack, sn) == ids and status_of(stack, ids[0]) == "NOTIFIED"


def test_legacy_path_alerts_are_delivered_too(stack, servers, receiver):
    quiet_outbox(servers)
    rx = receiver()
    sn = serial("legacy")
    stack.producer()                    # ratio 0: the old endpoints store directly
    start_notifier(stack, LJ_ALERT_WEBHOOK_URL=rx.url())
    r = stack.post("/upload_common_event", {"deviceSn": sn, "eventType": "SOS",
                                            "timestamp": int(time.time())})
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    got = wait_for(lambda: rx.of(sn), timeout=5, what="the legacy path's SOS delivered")
    assert got[0]["json"]["type"] == "SOS" and got[0]["json"]["level"] == "critical"


def test_receiver_down_for_20s_is_delivered_after_it_returns_once(pipeline, receiver):
    rx = receiver(up=False)     # not listening yet: connections are refused
    sn = serial("down")
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(), LJ_NOTIFY_MAX_ATTEMPTS=100)
    post_reading(pipeline, sn, 150)
    ids = wait_for(lambda: alert_ids(pipeline, sn), timeout=10, what="the alert")
    time.sleep(20)
    [(channel, attempts, state, error)] = deliveries(pipeline, ids[0])
    assert state == "PENDING" and attempts >= 5, (attempts, error)
    assert "connect" in error.lower(), error
    assert status_of(pipeline, ids[0]) == "NEW"
    rx.up()
    wait_for(lambda: rx.of(sn), timeout=5, what="the delivery once the receiver is back")
    time.sleep(2.0)
    assert len(rx.of(sn)) == 1
    assert status_of(pipeline, ids[0]) == "NOTIFIED"
    assert deliveries(pipeline, ids[0])[0][2] == "DELIVERED"


def test_slow_receiver_times_out_is_retried_and_not_sent_again_once_answered(pipeline, receiver):
    seen = set()

    def slow_first(req):
        key = req["headers"].get("Idempotency-Key")
        first = key not in seen
        seen.add(key)
        return (200, {}, b"{}", 10 if first else 0)

    rx = receiver(slow_first)
    sn = serial("slow")
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(), LJ_NOTIFY_TIMEOUT_MS=2000)
    post_reading(pipeline, sn, 150)
    ids = wait_for(lambda: alert_ids(pipeline, sn), timeout=10, what="the alert")
    # The quick answer to the retry, then the slow first one (10 s).
    wait_for(lambda: len(rx.of(sn)) >= 2, timeout=20, what="both answers")
    time.sleep(1.0)
    got = sorted(rx.of(sn), key=lambda r: r["answered"])
    first_ok = got[0]["answered"]
    assert len(got) == 2
    assert all(r["t"] <= first_ok for r in got)     # nothing sent after the first 2xx
    assert {r["headers"]["Idempotency-Key"] for r in got} == {str(ids[0])}
    [(channel, attempts, state, error)] = deliveries(pipeline, ids[0])
    assert (attempts, state) == (2, "DELIVERED")
    assert "timeout" in error.lower(), error


def test_400_is_not_retried_dead_lettered_listed_and_replayed(pipeline, receiver):
    answer = {"status": 400}
    rx = receiver(lambda req: (answer["status"], {}, b'{"error":"bad"}', 0))
    sn = serial("400")
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url())
    post_reading(pipeline, sn, 150)
    ids = wait_for(lambda: alert_ids(pipeline, sn), timeout=10, what="the alert")
    wait_for(lambda: status_of(pipeline, ids[0]) == "FAILED", timeout=10, what="FAILED")
    time.sleep(1.5)
    assert len(rx.of(sn)) == 1                              # no retry
    assert deliveries(pipeline, ids[0]) == [("webhook", 1, "DEAD", "HTTP 400")]
    env = dict(os.environ, LJ_PG_DSN=pipeline.s.dsn)
    tool = os.path.join(TOP, "scripts", "alerts")
    listed = subprocess.run([tool, "list"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert listed.returncode == 0, listed.stderr
    line = [ln for ln in listed.stdout.splitlines() if f"alert={ids[0]} " in ln]
    assert line and "channel=webhook" in line[0] and "HTTP 400" in line[0], listed.stdout
    stats = pipeline.get("/api/stats").json()["deliveries"]     # the dashboard's panel
    assert {"channel": "webhook", "status": "DEAD"} in [
        {k: d[k] for k in ("channel", "status")} for d in stats]
    answer["status"] = 200
    replay = subprocess.run([tool, "replay", str(ids[0])], env=env, capture_output=True,
                            text=True, timeout=30)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    wait_for(lambda: status_of(pipeline, ids[0]) == "NOTIFIED", timeout=10, what="NOTIFIED")
    assert len(rx.of(sn)) == 2
    assert deliveries(pipeline, ids[0])[0][2] == "DELIVERED"
    unknown = subprocess.run([tool, "replay", "999999999"], env=env, capture_output=True,
                             text=True, timeout=30)
    assert unknown.returncode == 1, unknown.stdout


def test_429_waits_for_retry_after_then_delivers(pipeline, receiver):
    calls = []

    def limited(req):
        calls.append(req)
        if len(calls) == 1:
            return (429, {"Retry-After": "2"}, b"", 0)
        return (503, {}, b"", 0) if len(calls) == 2 else (200, {}, b"", 0)

    rx = receiver(limited)
    sn = serial("429")
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url())
    post_reading(pipeline, sn, 150)
    wait_for(lambda: len(rx.of(sn)) >= 3, timeout=15, what="429, 503, then 200")
    got = rx.of(sn)
    assert [r["status"] for r in got] == [429, 503, 200]
    assert got[1]["t"] - got[0]["t"] >= 1.9         # Retry-After: 2, not the 0.2 s backoff
    assert got[2]["t"] - got[1]["t"] < 1.9


def test_a_huge_reply_still_counts_and_a_redirect_is_not_followed(pipeline, receiver):
    def answer(req):
        if req["path"] == "/big":
            return (200, {}, b"x" * 200_000, 0)       # far above the 8 KiB read cap
        if req["path"] == "/moved":
            return (302, {"Location": rx.url("/elsewhere")}, b"", 0)
        return (200, {}, b"{}", 0)

    rx = receiver(answer)
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=f"{rx.url('/big')},{rx.url('/moved')}")
    sn = serial("hostile")
    post_reading(pipeline, sn, 150)
    ids = wait_for(lambda: alert_ids(pipeline, sn), timeout=10, what="the alert")
    wait_for(lambda: status_of(pipeline, ids[0]) == "FAILED", timeout=10, what="FAILED")
    time.sleep(1.0)
    assert sorted(r["path"] for r in rx.of(sn)) == ["/big", "/moved"]   # once each, no hop
    assert deliveries(pipeline, ids[0]) == [
        ("webhook", 1, "DELIVERED", None),
        ("webhook2", 1, "DEAD", "HTTP 302 (redirects are not followed)")]


def test_50_alerts_of_one_device_in_a_minute_are_one_delivery_and_a_count(pipeline, receiver):
    rx = receiver()
    sn = serial("burst")
    t0 = now_ms() - 60_000
    body = {"data": [{"deviceSn": sn, "heartRate": 150, "timestamp": t0 + i * 1200}
                     for i in range(50)]}
    assert pipeline.post("/upload_health_data_v2", body).status_code == 200
    wait_for(lambda: len(alert_ids(pipeline, sn)) == 50, timeout=10, what="50 alerts")
    notifier = start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url())
    wait_for(lambda: pipeline.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s"
                                 " AND status = 'NEW'", (sn,)) == [(0,)], timeout=15,
             what="every alert handled")
    time.sleep(0.5)
    assert len(rx.of(sn)) == 1
    rows = pipeline.s.sql("SELECT status, count(*), max(suppressed_count) FROM t_alert_info"
                       " WHERE device_sn = %s GROUP BY status ORDER BY status", (sn,))
    assert rows == [("NOTIFIED", 1, 49), ("SUPPRESSED", 49, 0)]
    first = alert_ids(pipeline, sn)[0]
    assert rx.of(sn)[0]["json"]["id"] == first
    assert pipeline.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s"
                       " AND suppressed_by = %s", (sn, first)) == [(49,)]
    text = requests.get(f"http://127.0.0.1:{status_port(notifier)}/metrics", timeout=5).text
    assert metric_value(text, "ljwx_notifier_alerts_suppressed_total") == 49
    # A more severe alert of the same type is not a repeat.
    post_reading(pipeline, sn, 30)     # heart_rate_low_major: major, as severe: suppressed
    sn2 = serial("escalate")
    post_reading(pipeline, sn2, 130)   # minor ...
    wait_for(lambda: rx.of(sn2), timeout=10, what="the minor alert")
    post_reading(pipeline, sn2, 150)   # ... then major within the window: sent
    wait_for(lambda: len(rx.of(sn2)) == 2, timeout=10, what="the more severe alert")


def test_robot_and_sms_bodies_follow_their_documented_formats(pipeline, receiver):

    def answer(req):
        if req["path"] in ("/wechat", "/dingtalk"):
            return ROBOT_OK
        return (200, {}, b'{"ok":true}', 0)

    rx = receiver(answer)
    sn = serial("fmt")
    uid = pipeline.s.sql("INSERT INTO sys_user (user_name, device_sn, customer_id)"
                      " VALUES (%s, %s, 5) RETURNING id", ("张三 *VIP*", sn))[0][0]
    pipeline.s.sql("INSERT INTO sys_user_org (user_id, org_id) VALUES (%s, 77)", (uid,))
    sms = '{"phone":"13800000000","sign":"ljwx","content":{text},"sn":{device_sn}}'
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(),
                   LJ_ALERT_WECHAT_URL=rx.url("/wechat"),
                   LJ_ALERT_DINGTALK_URL=rx.url("/dingtalk"),
                   LJ_ALERT_SMS_URL=rx.url("/sms"), LJ_ALERT_SMS_TEMPLATE=sms)
    post_sos(pipeline, sn)
    wait_for(lambda: len(rx.of(sn)) == 4, timeout=10, what="one POST per channel")
    by_path = {r["path"]: r for r in rx.of(sn)}
    wechat = by_path["/wechat"]["json"]
    assert set(wechat) == {"msgtype", "markdown"} and wechat["msgtype"] == "markdown"
    assert set(wechat["markdown"]) == {"content"}
    content = wechat["markdown"]["content"]
    assert sn in content and "critical" in content and "SOS" in content
    assert "张三 \\*VIP\\*" in content        # the wearer, markdown-escaped
    hook = by_path["/hook"]["json"]
    assert (hook["user"], hook["user_name"], hook["org"]) == (uid, "张三 *VIP*", 77)
    assert len(content.encode()) <= 4096
    ding = by_path["/dingtalk"]["json"]
    assert set(ding) == {"msgtype", "markdown"} and ding["msgtype"] == "markdown"
    assert set(ding["markdown"]) == {"title", "text"}
    assert "SOS" in ding["markdown"]["title"] and sn in ding["markdown"]["text"]
    sms_body = by_path["/sms"]["json"]
    assert sms_body["phone"] == "13800000000" and sms_body["sn"] == sn
    assert sn in sms_body["content"] and "critical SOS" in sms_body["content"]
    assert "张三 *VIP*" in sms_body["content"]
    assert "Idempotency-Key" in by_path["/hook"]["headers"]
    for path in ("/wechat", "/dingtalk", "/sms"):
        assert by_path[path]["headers"]["Content-Type"] == "application/json"
    [aid] = alert_ids(pipeline, sn)
    assert [d[0] for d in deliveries(pipeline, aid)] == ["dingtalk", "sms", "webhook", "wechat"]
    assert status_of(pipeline, aid) == "NOTIFIED"
    # Routing (seeded): a minor alert goes to the webhook only.
    minor = serial("minor")
    post_reading(pipeline, minor, 130)
    wait_for(lambda: rx.of(minor), timeout=10, what="the minor alert")
    time.sleep(0.5)
    assert [r["path"] for r in rx.of(minor)] == ["/hook"]
    # An organisation with routes of its own uses only those.
    org_sn = serial("org")
    uid = pipeline.s.sql("INSERT INTO sys_user (user_name, device_sn) VALUES ('w', %s)"
                      " RETURNING id", (org_sn,))[0][0]
    pipeline.s.sql("INSERT INTO sys_user_org (user_id, org_id) VALUES (%s, 88)", (uid,))
    pipeline.s.sql("INSERT INTO t_notify_route (org_id, level, channel, enabled) VALUES"
                " (88, 'critical', 'sms', true), (88, 'critical', 'wechat', false)"
                " ON CONFLICT DO NOTHING")
    post_sos(pipeline, org_sn)
    wait_for(lambda: rx.of(org_sn), timeout=10, what="the organisation's alert")
    time.sleep(0.5)
    assert [r["path"] for r in rx.of(org_sn)] == ["/sms"]
    if os.environ.get("LJ_NOTIFY_CAPTURE"):     # docs/alerts.md shows these bodies
        with open(os.environ["LJ_NOTIFY_CAPTURE"], "w") as f:
            for r in rx.of(sn):
                f.write(f"{r['path']}\n{r['body'].decode()}\n")


def test_robot_errcode_is_a_failure_and_its_rate_limit_a_retry(pipeline, receiver):
    codes = [b'{"errcode":45009,"errmsg":"api freq out of limit"}',
             b'{"errcode":0,"errmsg":"ok"}']

    def answer(req):
        if req["path"] == "/wechat":
            return (200, {}, codes.pop(0) if codes else b'{"errcode":0}', 0)
        return (200, {}, b'{"errcode":310000,"errmsg":"keywords not in content"}', 0)

    rx = receiver(answer)
    sn = serial("errcode")
    start_notifier(pipeline, LJ_ALERT_WECHAT_URL=rx.url("/wechat"),
                   LJ_ALERT_DINGTALK_URL=rx.url("/dingtalk"))
    post_sos(pipeline, sn)
    ids = wait_for(lambda: alert_ids(pipeline, sn), timeout=10, what="the alert")
    wait_for(lambda: status_of(pipeline, ids[0]) == "FAILED", timeout=10, what="FAILED")
    assert deliveries(pipeline, ids[0]) == [
        ("dingtalk", 1, "DEAD", "robot errcode 310000"),
        ("wechat", 2, "DELIVERED", "robot errcode 45009")]


def test_two_notifiers_deliver_each_alert_once(pipeline, receiver):
    rx = receiver(lambda req: (200, {}, b"{}", 0.05))
    sns = alerts_of_devices(pipeline, "pair", 30)
    a = start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(), LJ_NOTIFY_BATCH=3,
                       LJ_NOTIFY_WORKERS=2)
    b = start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(), LJ_NOTIFY_BATCH=3,
                       LJ_NOTIFY_WORKERS=2)
    wait_for(lambda: all(rx.of(s) for s in sns), timeout=15, what="every alert")
    time.sleep(1.0)
    assert [len(rx.of(s)) for s in sns] == [1] * 30
    done = [p.output().count("delivered alert=") for p in (a, b)]
    assert sum(done) == 30 and min(done) > 0, done


def test_another_notifiers_lease_is_respected_until_it_runs_out(pipeline, receiver):
    rx = receiver()
    sn = serial("lease")
    [(aid,)] = pipeline.s.sql(
        "INSERT INTO t_alert_info (device_sn, alert_type, level, alert_time, claimed_by,"
        " claimed_until) VALUES (%s, 'SOS', 'critical', now(), 'elsewhere:1:0',"
        " now() + interval '3 seconds') RETURNING id", (sn,))
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url())
    time.sleep(2.0)
    assert rx.of(sn) == []                  # held by another notifier
    got = wait_for(lambda: rx.of(sn), timeout=5, what="the delivery once the lease ran out")
    assert got[0]["json"]["id"] == aid and status_of(pipeline, aid) == "NOTIFIED"


def test_a_stopped_notifier_gives_back_what_it_claimed(pipeline, receiver):
    rx = receiver(lambda req: (200, {}, b"{}", 0.5))
    sns = alerts_of_devices(pipeline, "give", 8)
    first = start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(), LJ_NOTIFY_BATCH=8)
    wait_for(lambda: any(rx.of(s) for s in sns), timeout=10, what="a first delivery")
    assert first.stop() == 0                # SIGTERM: the alert in hand, then exit
    assert "alerts claimed and not handled" in first.output()
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url())
    wait_for(lambda: all(rx.of(s) for s in sns), timeout=15, what="the rest, long before the"
             " 60 s lease")
    assert [len(rx.of(s)) for s in sns] == [1] * 8


def test_notifier_runs_with_only_the_documented_grants(pipeline, receiver):
    """docs/schema.md's grants for the notifier's role are enough."""
    import psycopg
    s = pipeline.s
    with psycopg.connect(f"host=127.0.0.1 port={s.pg_port} dbname=ljwx user=postgres",
                         autocommit=True) as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles"
                  " WHERE rolname = 'ljwx_notifier') THEN CREATE ROLE ljwx_notifier LOGIN;"
                  " END IF; END $$")
    with open(os.path.join(TOP, "docs", "schema.md")) as f:
        doc = f.read()
    grants = re.search(r"The notifier's role.*?```sql\n(.*?)```", doc, re.S).group(1)
    s.sql(grants)
    rx = receiver()
    start_notifier(pipeline, LJ_ALERT_WEBHOOK_URL=rx.url(),
                   LJ_PG_DSN=s.dsn.replace("user=ljwx", "user=ljwx_notifier"))
    sn = serial("grants")
    post_sos(pipeline, sn)
    wait_for(lambda: rx.of(sn), timeout=10, what="delivery by the notifier's role")
    [aid] = alert_ids(pipeline, sn)
    wait_for(lambda: status_of(pipeline, aid) == "NOTIFIED", timeout=5, what="NOTIFIED")


def test_notifier_refuses_a_bad_configuration(stack):
    def run(**env):
        p = subprocess.run([os.path.join(stack_bin(), "ljwx-notifier")],
                           env=stack.env(LJ_NOTIFY_STATUS_PORT="0", **env),
                           capture_output=True, text=True, timeout=20)
        return p.returncode, p.stderr

    rc, err = run()
    assert rc == 2 and "no alert channel configured" in err
    rc, err = run(LJ_ALERT_WEBHOOK_URL="ftp://127.0.0.1/secret-path")
    assert rc == 2 and "http:// or https://" in err and "secret-path" not in err
    rc, err = run(LJ_ALERT_SMS_URL="http://127.0.0.1:9/sms")
    assert rc == 2 and "alert_sms_template" in err
    rc, err = run(LJ_ALERT_SMS_URL="http://127.0.0.1:9/sms", LJ_ALERT_SMS_TEMPLATE="{nope}")
    assert rc == 2 and "unknown placeholder" in err
    rc, err = run(LJ_ALERT_WEBHOOK_URL=",".join(["http://127.0.0.1:9/x"] * 9))
    assert rc == 2 and "at most 8" in err
    rc, err = run(LJ_ALERT_WEBHOOK_URL="http://127.0.0.1:9/x", LJ_NOTIFY_LEASE_MS="1000")
    assert rc == 2 and "notify_lease_ms" in err


def stack_bin():
    from conftest import BIN
    return BIN

"""scripts/rollout against a real stack (issue 16 part 3): the checks before
the first step and between steps, the emergency rollback they trigger, and
retiring the legacy path (--retire-legacy / --restore-legacy, the
POST /api/legacy_path endpoint behind them, its audit rows, and what the
emergency rollback does while the legacy path is retired)."""
import datetime as dt
import json
import os
import subprocess
import threading
import time
import uuid

import requests

from conftest import BIN, TOP, wait_for


def tool(stack, name, *args, timeout=90, **extra):
    env = dict(stack.env(), LJ_PRODUCER_URLS=stack.url, LJ_RUN_DIR=str(stack.tmp / "run"),
               LJ_BIN_DIR=BIN)
    env.update(extra)
    return subprocess.run(["/usr/bin/python3", os.path.join(TOP, "scripts", name), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def rollout(stack, *args, started, **env):
    """scripts/rollout with its before-the-first-step window limited to this
    test's life: other tests of the session plant duplicates of their own."""
    minutes = (time.time() - started) / 60 + 0.02
    return tool(stack, "rollout", "--precheck-minutes", f"{minutes:.4f}", *args, **env)


def shadow_with_copies(stack):
    """(schema, env): a schema first on the tools' search_path whose
    t_user_health_data is ours plus the rows of <schema>.planted -- the only
    way to plant an exact copy of a key (device_sn, ts), which our primary
    key forbids. A reading of the same second is another reading."""
    schema = f"dup_{uuid.uuid4().hex[:8]}"
    stack.s.sql(f"CREATE SCHEMA {schema}")
    stack.s.sql(f"CREATE TABLE {schema}.planted (device_sn text, ts timestamptz,"
                " upload_method text, create_time timestamptz DEFAULT now())")
    stack.s.sql(f"CREATE VIEW {schema}.t_user_health_data AS"
                " SELECT device_sn, ts, upload_method, create_time FROM public.t_user_health_data"
                f" UNION ALL SELECT device_sn, ts, upload_method, create_time FROM {schema}.planted")
    return schema, {"PGOPTIONS": f"-c search_path={schema},public"}


def ratio(stack):
    return requests.get(stack.url + "/api/stream_traffic_ratio", timeout=5).json()


def set_ratio(stack, r, headers=None):
    return requests.post(stack.url + "/api/stream_traffic_ratio", data=json.dumps({"ratio": r}),
                         headers=headers or {}, timeout=5)


def legacy(stack, enabled, headers=None, data=None):
    body = data if data is not None else json.dumps({"enabled": enabled})
    return requests.post(stack.url + "/api/legacy_path", data=body, headers=headers or {},
                         timeout=5)


def audit(stack, since):
    return stack.s.sql("SELECT old_ratio, new_ratio, caller, reason FROM t_stream_ratio_audit"
                       " WHERE changed_at >= to_timestamp(%s) ORDER BY id", (since,))


def rows(stack, sn):
    return stack.s.sql("SELECT upload_method FROM t_user_health_data WHERE device_sn = %s",
                       (sn,))


class Load:
    """Uploads on a background thread until stopped (bounded by 'limit')."""

    def __init__(self, stack, path, tag, pause=0.02, limit=3000):
        self.stack, self.path, self.tag, self.pause, self.limit = stack, path, tag, pause, limit
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        for i in range(self.limit):
            if self.stop_ev.is_set():
                return
            try:
                self.stack.post(self.path, {"deviceSn": f"{self.tag}-{i % 50}",
                                            "heartRate": 70, "timestamp": 1_760_000_000 + i},
                                timeout=5)
            except requests.RequestException:
                pass
            time.sleep(self.pause)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.t.join(10)


# -- before the first step ---------------------------------------------------------------

def test_precheck_planted_duplicate_stops_before_any_change(stack):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    stack.consumer()
    sn = f"RD-{uuid.uuid4().hex[:8]}"
    assert stack.post("/upload_health_data", {"deviceSn": sn, "timestamp": 1_750_000_000}).ok
    schema, env = shadow_with_copies(stack)
    stack.s.sql(f"INSERT INTO {schema}.planted (device_sn, ts, upload_method)"
                " VALUES (%s, to_timestamp(1750000000), 'stream_v2')", (sn,))
    try:
        out = rollout(stack, "--steps", "0.5,1.0", "--window", "1", "--interval", "0.3",
                      started=started, **env)
    finally:
        stack.s.sql(f"DROP SCHEMA {schema} CASCADE")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "precheck consistency" in out.stdout and "duplicates=1" in out.stdout
    assert "FAILED" in out.stdout
    assert ratio(stack)["current_ratio"] == 0
    assert audit(stack, started) == []
    stack.s.sql("DELETE FROM t_user_health_data WHERE device_sn = %s", (sn,))
    # PostgreSQL out of reach fails the same check, and changes nothing either.
    out = rollout(stack, "--steps", "1.0", started=started,
                  LJ_PG_DSN="host=127.0.0.1 port=1 dbname=ljwx user=ljwx")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "precheck stream_health ok" in out.stdout
    assert "precheck consistency" in out.stdout and "postgresql: cannot connect" in out.stdout
    assert ratio(stack)["current_ratio"] == 0
    assert tool(stack, "rollout", "--steps", "0.5,x").returncode == 2
    assert tool(stack, "rollout", "--steps", "1.5").returncode == 2


def test_precheck_stream_health_with_redis_stopped_stops_before_any_change(stack, servers):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    servers.stop_redis()
    try:
        wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
                 is False, what="the producer to see Redis down")
        out = rollout(stack, "--steps", "0.5,1.0", "--window", "1", "--interval", "0.3",
                      started=started)
    finally:
        servers.start_redis()
    assert out.returncode == 3, out.stdout + out.stderr
    assert "precheck stream_health" in out.stdout and "not healthy" in out.stdout
    assert "ratio 0 ->" not in out.stdout
    wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
             is True, timeout=15, what="the producer to reconnect")
    assert ratio(stack)["current_ratio"] == 0
    assert stack.s.redis().get(stack.prefix + "stream_traffic_ratio") is None
    assert audit(stack, started) == []


def test_consistency_leaves_undelivered_entries_to_the_lag(stack):
    """An entry the group has not read yet is neither acknowledged nor
    pending: it is lag, not a missing reading (the between-step check of a
    rollout must not roll back for it)."""
    since = dt.datetime.now(dt.timezone.utc).isoformat()    # not other tests' duplicates
    stack.producer()
    consumer = stack.consumer()
    sn = f"RU-{uuid.uuid4().hex[:8]}"
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn, "timestamp": 1_750_000_000}).ok
    wait_for(lambda: rows(stack, sn) == [("stream_v2",)], what="the first row")
    assert consumer.stop() == 0
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn, "timestamp": 1_750_000_001}).ok
    out = tool(stack, "consistency", "--since", since)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "missing_readings=0" in out.stdout and "undelivered=1" in out.stdout


# -- between steps -------------------------------------------------------------------------

def test_a_step_with_growing_lag_rolls_back(stack):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    consumer = stack.consumer()         # creates the group, then nothing reads it
    group = stack.prefix + "health_processors"

    def has_group():
        try:
            return any(g["name"] == group for g in stack.s.redis().xinfo_groups(stack.stream()))
        except Exception:
            return False
    wait_for(has_group, what="the consumer group")
    assert consumer.stop() == 0
    with Load(stack, "/upload_health_data_v2", f"RL-{uuid.uuid4().hex[:6]}"):
        out = rollout(stack, "--steps", "0.5,1.0", "--window", "6", "--interval", "0.5",
                      "--max-lag-growth", "3", started=started)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "rolling back: consumer lag grew" in out.stdout
    assert "ratio 0" in out.stdout
    assert ratio(stack)["current_ratio"] == 0


def test_lag_grown_over_a_step_rolls_back_at_its_end(stack):
    """Growth that the in-window rule tolerates (--max-lag-growth high) is
    still caught by the check at the step's end (--max-lag)."""
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    stack.idle_groups()
    with Load(stack, "/upload_health_data_v2", f"RG-{uuid.uuid4().hex[:6]}"):
        out = rollout(stack, "--steps", "0.5,1.0", "--window", "2", "--interval", "0.5",
                      "--max-lag-growth", "1000", "--max-lag", "5", started=started)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "rolling back: ratio=0.5 lag at step end=" in out.stdout
    assert "grew over the step" in out.stdout
    assert ratio(stack)["current_ratio"] == 0


def test_a_duplicate_stored_during_a_step_rolls_back(stack):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    stack.consumer()
    sn = f"RS-{uuid.uuid4().hex[:8]}"
    schema, env = shadow_with_copies(stack)

    def plant():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ratio(stack)["current_ratio"] != 1:
            time.sleep(0.05)
        stack.s.sql("INSERT INTO t_user_health_data (device_sn, ts, upload_method) VALUES"
                    " (%s, to_timestamp(1750000000), 'optimized'),"
                    " (%s, to_timestamp(1750000000.5), 'stream_v2')", (sn, sn))
        stack.s.sql(f"INSERT INTO {schema}.planted (device_sn, ts, upload_method)"
                    " VALUES (%s, to_timestamp(1750000000), 'stream_v2')", (sn,))
    t = threading.Thread(target=plant, daemon=True)
    t.start()
    try:
        out = rollout(stack, "--steps", "1.0", "--window", "1.5", "--interval", "0.5",
                      started=started, **env)
    finally:
        t.join(25)
        stack.s.sql("DELETE FROM t_user_health_data WHERE device_sn = %s", (sn,))
        stack.s.sql(f"DROP SCHEMA {schema} CASCADE")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "precheck consistency ok" in out.stdout
    assert "rolling back: ratio=1.0 consistency (since" in out.stdout
    assert "duplicates=1" in out.stdout
    assert ratio(stack)["current_ratio"] == 0


def test_full_short_rollout_checks_between_steps(stack):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    stack.consumer()
    with Load(stack, "/upload_health_data", f"RF-{uuid.uuid4().hex[:6]}", pause=0.03):
        out = rollout(stack, "--steps", "0.5,1.0", "--window", "1.5", "--interval", "0.5",
                      started=started)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any("precheck stream_health ok" in ln for ln in lines)
    assert any("precheck consistency ok" in ln for ln in lines)
    assert sum("consistency ok (since" in ln for ln in lines) == 2
    assert sum("lag at step end" in ln for ln in lines) == 2
    assert "rollout complete at ratio 1.0" in out.stdout
    assert ratio(stack)["current_ratio"] == 1
    reasons = [a[3] for a in audit(stack, started)]
    assert reasons == ["ratio_change", "ratio_change"]


# -- retiring the legacy path ----------------------------------------------------------------

def test_retire_is_refused_below_1(stack):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    assert set_ratio(stack, 0.6).status_code == 200
    out = rollout(stack, "--retire-legacy", started=started)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "ratio 0.6" in out.stdout and "FAILED" in out.stdout
    resp = legacy(stack, False)             # the producer refuses it on its own too
    assert resp.status_code == 409 and resp.json()["success"] is False
    assert ratio(stack)["legacy_path"] == "on"
    assert [a[3] for a in audit(stack, started)] == ["ratio_change"]


def test_legacy_path_endpoint_refuses_bad_bodies_and_unauthorised_callers(stack):
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    assert set_ratio(stack, 1).status_code == 200
    for bad in ("{", "[]", '{"enabled":"no"}', '{"enabled":0}', "{}", "enabled=false"):
        resp = legacy(stack, None, data=bad)
        assert resp.status_code == 400, bad
        assert resp.json()["success"] is False
    fwd = {"X-Forwarded-For": "203.0.113.7"}
    resp = legacy(stack, False, headers=fwd)
    assert resp.status_code == 403 and "proxied" in resp.json()["message"]
    assert requests.get(stack.url + "/api/legacy_path", timeout=5).status_code == 405
    assert ratio(stack)["legacy_path"] == "on"


def test_legacy_path_endpoint_needs_the_token_when_one_is_set(stack):
    stack.producer(LJ_ADMIN_TOKEN="s3cret-legacy", LJ_RATIO_REFRESH_MS=50)
    stack.consumer()        # its groups make the stream system healthy for the precheck
    auth = {"Authorization": "Bearer s3cret-legacy"}
    assert set_ratio(stack, 1, auth).status_code == 200
    assert legacy(stack, False).status_code == 401
    assert legacy(stack, False, {"Authorization": "Bearer wrong"}).status_code == 403
    assert legacy(stack, False, {"X-Forwarded-For": "203.0.113.7"}).status_code == 401
    assert ratio(stack)["legacy_path"] == "on"
    out = tool(stack, "rollout", "--retire-legacy", "--precheck-minutes", "0.01")
    assert out.returncode == 2 and "401" in out.stdout, out.stdout + out.stderr
    assert ratio(stack)["legacy_path"] == "on"
    out = tool(stack, "rollout", "--retire-legacy", "--precheck-minutes", "0.01",
               LJ_ADMIN_TOKEN="s3cret-legacy")
    assert out.returncode == 0, out.stdout + out.stderr
    assert ratio(stack)["legacy_path"] == "retired"
    assert "s3cret" not in stack.procs[0].output()


def test_retired_legacy_path_answers_503_and_restore_brings_the_fallback_back(stack, servers):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    stack.consumer()
    assert set_ratio(stack, 1).status_code == 200
    out = rollout(stack, "--retire-legacy", started=started)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "legacy path on -> retired" in out.stdout
    assert ratio(stack)["legacy_path"] == "retired"
    assert stack.s.redis().get(stack.prefix + "stream_legacy_path") == "retired"
    wait_for(lambda: (1.0, 1.0, "127.0.0.1", "legacy_retired") in audit(stack, started),
             what="the retire audit row")
    sn = f"RR-{uuid.uuid4().hex[:8]}"
    servers.stop_redis()
    try:
        wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
                 is False, what="the producer to see Redis down")
        for i, path in enumerate(("/upload_health_data", "/upload_health_data_batch")):
            resp = stack.post(path, {"deviceSn": sn, "heartRate": 70,
                                     "timestamp": 1_750_000_000 + i})
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["Retry-After"]) >= 1
            assert "legacy path is retired" in resp.json()["message"]
        assert rows(stack, sn) == []
        # The old device-report and event paths are routed too: same answer.
        for path, body in (("/upload_device_info", {"deviceSn": sn, "batteryLevel": 50}),
                           ("/upload_common_event", {"deviceSn": sn, "eventType": "SOS"})):
            resp = stack.post(path, body)
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["Retry-After"]) >= 1
            assert "legacy path is retired" in resp.json()["message"]
        assert stack.s.sql("SELECT (SELECT count(*) FROM t_device_info WHERE device_sn = %s)"
                           " + (SELECT count(*) FROM t_common_event WHERE device_sn = %s)",
                           (sn, sn)) == [(0,)]
    finally:
        servers.start_redis()
    wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
             is True, timeout=15, what="the producer to reconnect")
    out = tool(stack, "rollout", "--restore-legacy")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "legacy path retired -> on" in out.stdout
    assert ratio(stack)["legacy_path"] == "on"
    wait_for(lambda: (1.0, 1.0, "127.0.0.1", "legacy_restored") in audit(stack, started),
             what="the restore audit row")
    servers.stop_redis()
    try:
        wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
                 is False, what="the producer to see Redis down")
        resp = stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 71,
                                                  "timestamp": 1_750_000_005})
        assert resp.status_code == 200 and resp.json()["status"] == "success", resp.text
        assert rows(stack, sn) == [("optimized",)]
    finally:
        servers.start_redis()
    wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
             is True, timeout=15, what="the producer to reconnect")


def test_legacy_switch_with_redis_down_changes_nothing(stack, servers):
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    assert set_ratio(stack, 1).status_code == 200
    servers.stop_redis()
    try:
        wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
                 is False, what="the producer to see Redis down")
        resp = legacy(stack, False)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
        assert "legacy path not changed" in resp.json()["message"]
        assert ratio(stack)["legacy_path"] == "on"
    finally:
        servers.start_redis()
    wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"]
             is True, timeout=15, what="the producer to reconnect")
    assert stack.s.redis().get(stack.prefix + "stream_legacy_path") is None


def test_restore_not_confirmed_by_every_producer_exits_1(stack):
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    out = tool(stack, "rollout", "--restore-legacy", "--confirm-timeout", "1",
               LJ_PRODUCER_URLS=f"{stack.url},http://127.0.0.1:1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "legacy path on -> on" in out.stdout
    assert "not confirmed by http://127.0.0.1:1" in out.stdout
    # Retiring asks every producer for its ratio first: one out of reach, no change.
    assert set_ratio(stack, 1).status_code == 200
    out = tool(stack, "rollout", "--retire-legacy",
               LJ_PRODUCER_URLS=f"{stack.url},http://127.0.0.1:1")
    assert out.returncode == 2 and "unreachable" in out.stdout, out.stdout + out.stderr
    assert ratio(stack)["legacy_path"] == "on"


def test_emergency_rollback_while_retired_restores_the_legacy_path(stack):
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    assert set_ratio(stack, 1).status_code == 200
    resp = legacy(stack, False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["legacy_path"] == "retired" and resp.json()["old_legacy_path"] == "on"
    again = legacy(stack, False)            # idempotent, and says so
    assert again.status_code == 200 and again.json()["old_legacy_path"] == "retired"
    resp = requests.post(stack.url + "/api/emergency_rollback", timeout=5)
    assert resp.status_code == 200
    body = resp.json()
    assert body["traffic_ratio"] == 0 and body["old_ratio"] == 1
    assert body["legacy_path"] == "on"
    now = ratio(stack)
    assert now["current_ratio"] == 0 and now["legacy_path"] == "on"
    sn = f"RE-{uuid.uuid4().hex[:8]}"
    resp = stack.post("/upload_health_data", {"deviceSn": sn, "timestamp": 1_750_000_000})
    assert resp.status_code == 200 and resp.json()["status"] == "success"
    # One row per change (a retire that changed nothing adds none); rows of
    # separate calls may be written by different pool threads, so only the
    # rollback's pair has an order: the legacy path restored, then the ratio.
    want = [(0.0, 1.0, "127.0.0.1", "ratio_change"), (1.0, 1.0, "127.0.0.1", "legacy_retired"),
            (1.0, 1.0, "127.0.0.1", "legacy_restored"),
            (1.0, 0.0, "127.0.0.1", "emergency_rollback")]
    deadline = time.monotonic() + 10
    while sorted(audit(stack, started)) != sorted(want) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = audit(stack, started)
    assert sorted(got) == sorted(want)
    assert got.index(want[2]) < got.index(want[3])
    # A rollback when the legacy path is on writes no legacy row.
    requests.post(stack.url + "/api/emergency_rollback", timeout=5)
    time.sleep(0.3)
    assert [a[3] for a in audit(stack, started)].count("legacy_restored") == 1


def test_a_ratio_below_1_while_retired_restores_the_legacy_path(stack):
    """The old service's scripts roll back by POSTing ratio 0: while the
    legacy path is retired that must still work (restore, then the ratio),
    audited, not 409."""
    started = time.time()
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    assert set_ratio(stack, 1).status_code == 200
    assert legacy(stack, False).status_code == 200
    resp = set_ratio(stack, 0)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True and body["new_ratio"] == 0 and body["legacy_path"] == "on"
    now = ratio(stack)
    assert now["current_ratio"] == 0 and now["legacy_path"] == "on"
    sn = f"RB-{uuid.uuid4().hex[:8]}"
    resp = stack.post("/upload_health_data", {"deviceSn": sn, "timestamp": 1_750_000_000})
    assert resp.status_code == 200 and resp.json()["status"] == "success", resp.text
    want = (1.0, 1.0, "127.0.0.1", "legacy_restored")
    wait_for(lambda: want in audit(stack, started) and
             (1.0, 0.0, "127.0.0.1", "ratio_change") in audit(stack, started),
             what="the restore and ratio audit rows")
    # At 1 the switch stays as it is: the answer says so.
    assert legacy(stack, True).status_code == 200
    assert set_ratio(stack, 1).json()["legacy_path"] == "on"

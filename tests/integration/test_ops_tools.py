"""The operator tools in scripts/ against the real local stack: each prints
what it does and exits non-zero on failure."""
import datetime as dt
import json
import os
import subprocess
import threading
import time
import uuid

import requests

from conftest import BIN, TOP, wait_for


def tool(stack, name, *args, timeout=60, extra_env=None):
    env = dict(stack.env(), LJ_PRODUCER_URLS=stack.url, LJ_RUN_DIR=str(stack.tmp / "run"),
               LJ_BIN_DIR=BIN)
    env.update(extra_env or {})
    return subprocess.run(["/usr/bin/python3", os.path.join(TOP, "scripts", name), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_rollout_rolls_back_when_the_stream_path_fails(stack):
    # Nothing drains the stream and its high watermark is 1: stream uploads fail.
    stack.producer(LJ_STREAM_HIGH_WATERMARK=1, LJ_RATIO_REFRESH_MS=50)
    stack.idle_groups()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            stack.post("/upload_health_data_v2", {"deviceSn": f"RO-{uuid.uuid4().hex[:6]}"})
            time.sleep(0.02)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        out = tool(stack, "rollout", "--steps", "0.2,1.0", "--window", "3", "--interval", "0.5")
    finally:
        stop.set()
        t.join()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "rolling back: error rate" in out.stdout
    assert "ratio 0" in out.stdout          # confirmed on the instance
    assert requests.get(stack.url + "/api/stream_traffic_ratio", timeout=5).json()[
        "current_ratio"] == 0


def test_rollout_completes_when_every_step_holds(stack):
    stack.producer(LJ_RATIO_REFRESH_MS=50)
    stack.consumer()
    out = tool(stack, "rollout", "--steps", "0.5,1.0", "--window", "1", "--interval", "0.3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rollout complete at ratio 1.0" in out.stdout
    assert out.stdout.count("error_rate=") >= 4


def test_rollback_confirms_ratio_0(stack):
    stack.producer()
    requests.post(stack.url + "/api/stream_traffic_ratio", json={"ratio": 0.7}, timeout=5)
    out = tool(stack, "rollback")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rolled back from 0.7" in out.stdout
    stack.url = "http://127.0.0.1:1"        # an instance that is not there
    out = tool(stack, "rollback", "--confirm-timeout", "1")
    assert out.returncode == 1 and "FAILED" in out.stdout


def test_consistency_counts_paths_and_two_readings_in_one_second_are_no_duplicate(stack):
    stack.producer()
    stack.consumer()
    sn = f"CO-{uuid.uuid4().hex[:8]}"
    requests.post(stack.url + "/api/stream_traffic_ratio", json={"ratio": 0}, timeout=5)
    assert stack.post("/upload_health_data", {"deviceSn": sn, "timestamp": 1_750_000_000}).ok
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn + "s",
                                                 "timestamp": 1_750_000_000}).ok
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                                 (sn + "s",)) == [(1,)], what="the stream row")
    out = tool(stack, "consistency", "--minutes", "5")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rows optimized=" in out.stdout and "rows stream_v2=" in out.stdout
    assert "duplicates=0" in out.stdout and "missing_readings=0" in out.stdout
    # Another reading of the device within the same second, by the other
    # path: two readings (their keys differ), not a duplicate.
    stack.s.sql("INSERT INTO t_user_health_data (device_sn, ts, upload_method)"
                " VALUES (%s, to_timestamp(1750000000.5), 'stream_v2')", (sn,))
    out = tool(stack, "consistency", "--minutes", "5")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "duplicates=0" in out.stdout


def test_consistency_finds_a_reading_stored_twice_under_its_exact_key(stack):
    """The primary key forbids it in our schema; the check still reports a
    copy of one (device_sn, ts), here in a table without the key (a schema
    first on the tool's search_path)."""
    schema = f"nokey_{uuid.uuid4().hex[:8]}"
    since = dt.datetime.now(dt.timezone.utc).isoformat()
    stack.s.sql(f"CREATE SCHEMA {schema}")
    try:
        stack.s.sql(f"CREATE TABLE {schema}.t_user_health_data (device_sn text, ts timestamptz,"
                    " upload_method text, create_time timestamptz DEFAULT now())")
        stack.s.sql(f"INSERT INTO {schema}.t_user_health_data (device_sn, ts, upload_method)"
                    " VALUES ('CD-1', to_timestamp(1750000000.25), 'optimized'),"
                    " ('CD-1', to_timestamp(1750000000.25), 'stream_v2'),"
                    " ('CD-1', to_timestamp(1750000000.5), 'stream_v2')")
        out = tool(stack, "consistency", "--since", since,
                   extra_env={"PGOPTIONS": f"-c search_path={schema},public"})
        assert out.returncode == 1, out.stdout + out.stderr
        assert "duplicates=1" in out.stdout and "device=CD-1" in out.stdout
    finally:
        stack.s.sql(f"DROP SCHEMA {schema} CASCADE")


def test_consistency_finds_a_server_stamped_reading(stack):
    """A reading without a timestamp is stamped with microseconds (payload
    "ts" + "ts_us"): the check keys both sides in integer microseconds, so
    the reading stored once is found, not reported missing."""
    since = dt.datetime.now(dt.timezone.utc).isoformat()
    stack.producer()
    stack.consumer()
    sn = f"CU-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        assert stack.post("/upload_health_data_v2", {"deviceSn": sn, "heartRate": 72}).ok
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                                 (sn,)) == [(3,)], what="the rows")
    out = tool(stack, "consistency", "--since", since)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "missing_readings=0" in out.stdout and "duplicates=0" in out.stdout


def test_consistency_reports_an_acknowledged_entry_without_its_rows(stack):
    stack.producer()
    stack.consumer()
    sn = f"CM-{uuid.uuid4().hex[:8]}"
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn, "timestamp": 1_750_000_100}).ok
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                                 (sn,)) == [(1,)], what="the row")
    stack.s.sql("DELETE FROM t_user_health_data WHERE device_sn = %s", (sn,))   # lost row
    out = tool(stack, "consistency", "--minutes", "5")
    assert out.returncode == 1
    assert "acknowledged but 1 reading(s) not stored" in out.stdout


def test_scale_one_three_one(stack):
    group = stack.prefix + "health_processors"

    def pids_in_group():
        try:
            names = [c["name"] for c in stack.s.redis().xinfo_consumers(stack.stream(), group)]
        except Exception:
            return set()
        return {n.split(":")[1] for n in names}

    for n in (1, 3, 3, 1):
        out = tool(stack, "scale", str(n))
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{n} consumer process(es) running" in out.stdout
        assert f"{n} consumer process(es) here" in tool(stack, "scale", "status").stdout
        # Each process joins the group under its own name (host:pid:n); the
        # stopped ones are removed by the survivors' upkeep (their pid is gone).
        wait_for(lambda: len(pids_in_group()) == n, timeout=20,
                 what=f"{n} processes in the group")
    out = tool(stack, "scale", "0")
    assert out.returncode == 0 and "0 consumer process(es) running" in out.stdout


def test_dlq_replay_stores_the_replayed_entry_once(stack):
    stack.producer()
    sn = f"DL-{uuid.uuid4().hex[:8]}"
    payload = json.dumps([{"device_sn": sn, "ts": 1_750_000_000_000, "heart_rate": 70,
                           "source_method": "api"}])
    r = stack.s.redis()
    dead_id = r.xadd(stack.stream() + ":dead", {
        "dead_reason": "delivered 6 times without being stored", "dead_id": "1-1",
        "dead_deliveries": "6", "dead_consumer": "x:1:0", "device_sn": sn,
        "message_type": "health_data", "api_version": "v2", "payload": payload})
    out = tool(stack, "dlq", "list")
    assert out.returncode == 0 and dead_id in out.stdout and "delivered 6 times" in out.stdout
    assert tool(stack, "dlq", "show", "9-9").returncode == 1
    out = tool(stack, "dlq", "replay", dead_id)
    assert out.returncode == 0, out.stdout + out.stderr
    assert r.xlen(stack.stream() + ":dead") == 0
    stack.consumer()
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                                 (sn,)) == [(1,)], what="the replayed row")
    assert tool(stack, "dlq", "replay", dead_id).returncode == 1     # gone: nothing twice


def test_trace_reports_each_state(stack):
    stack.producer()
    r = stack.s.redis()
    sn = f"TR-{uuid.uuid4().hex[:8]}"
    group = stack.prefix + "health_processors"

    def upload(i):
        resp = stack.post("/upload_health_data_v2", {"deviceSn": sn, "timestamp": 1_750_000_000 + i})
        assert resp.status_code == 200
        return resp.json()["stream_id"]

    def trace(*args):
        out = tool(stack, "trace", *args)
        return out.returncode, json.loads(out.stdout.split("trace: ", 1)[1])

    in_stream = upload(0)                           # no group yet: not delivered
    assert trace(in_stream) == (1, {"state": "in_stream"})
    r.xgroup_create(stack.stream(), group, id="0")
    r.xreadgroup(group, "support:1:0", {stack.stream(): ">"}, count=1)
    code, state = trace(in_stream)
    assert code == 1 and state["state"] == "pending" and state["consumer"] == "support:1:0"
    assert state["deliveries"] == 1 and state["idle_ms"] >= 0
    r.xack(stack.stream(), group, in_stream)
    stored = upload(2)
    # A poison entry (a value PostgreSQL refuses) that the consumer dead-letters.
    poison = r.xadd(stack.stream(), {"payload": json.dumps([{
        "device_sn": sn, "ts": 1_700_000_000_000, "heart_rate": 4_000_000_000,
        "source_method": "api"}])})
    stack.consumer()
    wait_for(lambda: trace(stored)[0] == 0, what="the upload to be stored")
    wait_for(lambda: trace(poison)[1]["state"] == "dead_lettered", what="the poison entry")
    code, state = trace(poison)
    assert code == 1 and state["reason"] and state["dead_letter_id"]
    assert r.xrange(stack.stream() + ":dead", state["dead_letter_id"],
                    state["dead_letter_id"])[0][1]["dead_id"] == poison
    code, state = trace(stored)
    assert state["state"] == "stored" and state["rows"] == 1 and state["device_sn"] == sn
    code, state = trace("--device", sn, "--ts", str((1_750_000_000 + 2) * 1000))
    assert code == 0 and state["stream_id"] == stored
    assert trace("1-1")[1] == {"state": "unknown"}
    assert tool(stack, "trace", "not-an-id").returncode == 2      # 400 from the producer

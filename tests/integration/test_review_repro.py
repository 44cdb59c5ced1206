"""Reviewer repros (branch review): each test asserts the behaviour the
issue/SPEC promises and fails against the current code."""
import threading
import time
import uuid

import psycopg

from conftest import wait_for


def tag(name):
    return f"RV{name}{uuid.uuid4().hex[:6]}"


def test_bare_record_with_an_unknown_devices_key_is_still_accepted(stack):
    """SPEC §2.1: unknown keys are ignored. A bare RECORD carrying a key
    named "devices" (e.g. a paired-devices count) was accepted before the
    {"devices": [...]} shape was added; now it is refused whole."""
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=1000)
    sn = tag("K")
    r = stack.post("/upload_health_data_v2", {"deviceSn": sn, "heartRate": 70,
                                              "timestamp": 1_760_000_000, "devices": 2})
    assert r.status_code == 200, r.text


def test_consistency_finds_a_reading_sent_without_timestamp(stack):
    """A reading without a timestamp is stamped with microseconds (payload
    "ts" + "ts_us"); scripts/consistency joins on "ts" alone, so a reading
    stored exactly once is reported missing -- and scripts/rollout rolls
    back (or refuses to start) on a healthy stack."""
    import datetime as dt
    import os
    import subprocess
    from conftest import BIN, TOP
    since = dt.datetime.now(dt.timezone.utc).isoformat()
    stack.producer()
    stack.consumer()
    sn = tag("TS")
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn, "heartRate": 72}).ok
    wait_for(lambda: servers_rows(stack, sn) == 1, what="the row")
    env = dict(stack.env(), LJ_PRODUCER_URLS=stack.url, LJ_RUN_DIR=str(stack.tmp / "run"),
               LJ_BIN_DIR=BIN)
    out = subprocess.run(["/usr/bin/python3", os.path.join(TOP, "scripts", "consistency"),
                          "--since", since], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "missing_readings=0" in out.stdout, out.stdout + out.stderr


def servers_rows(stack, sn):
    return stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn = %s",
                       (sn,))[0][0]


def test_one_unauthenticated_upload_cannot_create_hundreds_of_partitions(stack, servers):
    """Any device may send readings dated anywhere in 2000..2099; each new
    month is a CREATE TABLE + unique index under an EXCLUSIVE lock on the
    parent (all writers wait). One upload of 1000 readings, each in another
    month, makes up to 1000 tables. A bound (a window around now, or a cap
    of new months per batch) is missing."""
    import datetime as dt
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=0)
    before = servers.sql("SELECT count(*) FROM pg_inherits"
                         " WHERE inhparent = 't_user_health_data'::regclass")[0][0]
    sn = tag("PM")
    recs = []
    for i in range(200):                         # 200 months of 2001 .. 2017
        y, m = 2001 + i // 12, i % 12 + 1
        recs.append({"deviceSn": sn, "heartRate": 70,
                     "timestamp": int(dt.datetime(y, m, 15, tzinfo=dt.timezone.utc).timestamp())})
    r = stack.post("/upload_health_data", {"data": recs}, timeout=60)
    assert r.status_code == 200, r.text
    after = servers.sql("SELECT count(*) FROM pg_inherits"
                        " WHERE inhparent = 't_user_health_data'::regclass")[0][0]
    assert after - before <= 24, f"one upload created {after - before} partitions"

"""The old service's acceptance stress test, its shape, bounded: simulated
users each POST a batch of 100 camelCase records to /upload_health_data_batch
and think 0.2-1.0 s, in a loop (build/loadgen's think mode, as `make bench`
runs it for 200 users x 60 s). On the legacy path (ratio 0) and the stream
path (ratio 1, a consumer storing): no errors, and every upload answered 200
has its 100 rows stored exactly once, by the path it took. Latency is not
asserted (a shared machine); `make bench` reports it.
"""
import json
import os
import subprocess
import uuid

import pytest

from conftest import TOP, free_port, wait_for

LOADGEN = os.path.join(TOP, "build", "loadgen")
RECORDS = 100


def loadgen(port, users, seconds, prefix, log, think=(200, 1000), records=RECORDS):
    """Runs the think mode; (exit status, its JSON summary, the log's lines)."""
    if not os.access(LOADGEN, os.X_OK):
        pytest.fail(f"{LOADGEN} missing: run `make build/loadgen` (make test builds it)")
    out = subprocess.run([LOADGEN, "think", str(port), str(users), str(seconds), prefix,
                          str(think[0]), str(think[1]), str(records), str(log)],
                         capture_output=True, text=True, timeout=seconds + 60)
    assert out.stdout.strip(), f"loadgen printed nothing: {out.stderr}"
    lines = [line.split() for line in open(log).read().splitlines()]
    return out.returncode, json.loads(out.stdout), lines


def stored_batches(servers, prefix):
    """batch_id -> (rows, distinct keys, upload methods) of this run's rows."""
    rows = servers.sql("SELECT batch_id, count(*), count(DISTINCT (device_sn, ts)),"
                       " string_agg(DISTINCT upload_method, ',')"
                       " FROM t_user_health_data WHERE device_sn LIKE %s GROUP BY batch_id",
                       (prefix + "-%",))
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def stored_rows(servers, prefix):
    return servers.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE %s",
                       (prefix + "-%",))[0][0]


def check_run(stack, ratio, users=20, seconds=5):
    prefix = f"SS{uuid.uuid4().hex[:6]}"
    assert stack.get("/api/stream_traffic_ratio").json()["current_ratio"] == ratio
    rc, res, lines = loadgen(stack.http_port, users, seconds, prefix,
                             stack.tmp / "loadgen.log")
    assert rc == 0, res
    assert res["errors"] == 0 and res["ok"] == res["requests"] == len(lines), res
    # Each user thinks at most 1 s between answers: several rounds each.
    assert res["requests"] >= 2 * users, res
    assert {line[2] for line in lines} == {"200"}
    assert res["accepted"] == RECORDS * res["ok"] and res["duplicates"] == 0, res
    return prefix, res, {f"{prefix}-{u}-{k}" for u, k, _, _ in lines}


def check_stored(stack, prefix, res, answered, method):
    batches = stored_batches(stack.s, prefix)
    assert set(batches) == answered
    for batch_id, (n, distinct, methods) in batches.items():
        assert (n, distinct, methods) == (RECORDS, RECORDS, method), batch_id
    assert stored_rows(stack.s, prefix) == RECORDS * res["ok"]


def test_stress_shape_legacy_path(stack):
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=0)
    prefix, res, answered = check_run(stack, 0)
    # Answered after COMMIT: every row is there already.
    check_stored(stack, prefix, res, answered, "optimized")


def test_stress_shape_stream_path(stack):
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=1000)
    stack.consumer("--workers", "2")
    prefix, res, answered = check_run(stack, 1)
    wait_for(lambda: stored_rows(stack.s, prefix) >= RECORDS * res["ok"], timeout=60,
             what="the consumer to store every accepted row")
    check_stored(stack, prefix, res, answered, "stream_v2")


def test_stress_shape_counts_refused_uploads(stack):
    """A harness that called a refusal a success would report throughput
    that is not there: every 413 counts as an error, nothing is stored."""
    stack.producer(LJ_MAX_RECORDS=50)
    prefix = f"SR{uuid.uuid4().hex[:6]}"
    rc, res, lines = loadgen(stack.http_port, 4, 2, prefix, stack.tmp / "loadgen.log")
    assert rc == 1
    assert res["requests"] >= 4 and res["ok"] == 0 and res["accepted"] == 0, res
    assert res["errors"] == res["requests"] == len(lines), res
    assert {line[2] for line in lines} == {"413"}
    assert stored_rows(stack.s, prefix) == 0


def test_stress_shape_counts_unreachable_server(tmp_path):
    rc, res, lines = loadgen(free_port(), 2, 1, "SU", tmp_path / "loadgen.log",
                             think=(100, 200))
    assert rc == 1
    assert res["requests"] >= 2 and res["ok"] == 0, res
    assert res["errors"] == res["conn_errors"] == res["requests"] == len(lines), res
    assert {line[2] for line in lines} == {"0"}


def test_loadgen_think_refuses_bad_arguments(tmp_path):
    for args in (["0", "5", "P", "200", "1000", "100"],        # no users
                 ["2", "5", "P", "900", "100", "100"],         # think min > max
                 ["2", "5", "P", "200", "1000", "1001"],       # too many records
                 ["2", "5", "P" * 33, "200", "1000", "100"]):  # prefix too long
        out = subprocess.run([LOADGEN, "think", "1"] + args, capture_output=True, text=True,
                             timeout=10)
        assert out.returncode == 2 and out.stdout == "", args

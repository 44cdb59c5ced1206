"""The measuring side of `make bench` (tests/bench/bench.py), where a wrong
harness would report a figure that is not there: the durable PostgreSQL
really runs durable, the wrk scripts never repeat a (device_sn, ts) key
(else the legacy path answers duplicates and stores half), and the rows
check catches rows missing or stored by the other path.
"""
import os
import shutil
import sys
import tempfile
import uuid

import pytest

from conftest import TOP, Servers

sys.path.insert(0, os.path.join(TOP, "tests", "bench"))
import bench  # noqa: E402


def test_durable_postgres_runs_with_fsync_and_can_go_back():
    tmp = tempfile.mkdtemp(prefix="ljwx-durable-")  # as the servers fixture: postgres can enter
    s = Servers(tmp)
    try:
        s.start_pg(durable=True)
        s.create_db()
        assert s.pg_settings() == {"fsync": "on", "synchronous_commit": "on",
                                   "full_page_writes": "on"}
        s.stop_pg()
        s.start_pg()
        assert s.pg_settings()["fsync"] == "off"
    finally:
        s.stop_pg()
        shutil.rmtree(tmp, ignore_errors=True)


def insert(servers, tag, n, method):
    servers.sql("INSERT INTO t_user_health_data (device_sn, ts, upload_method)"
                " SELECT %s || '-' || i, now(), %s FROM generate_series(1, %s) i",
                (tag, method, n))


def test_rows_check_catches_missing_rows_and_the_wrong_path(servers):
    tag = f"RC{uuid.uuid4().hex[:6]}"
    insert(servers, tag, 3, "optimized")
    assert bench.rows_check(servers, tag, 0, 3, 3) == (3, None)
    n, bad = bench.rows_check(servers, tag, 0, 4, 10)
    assert n == 3 and "ROWS CHECK FAILED" in bad
    n, bad = bench.rows_check(servers, tag, 1, 3, 3)
    assert n == 3 and "stream_v2" in bad
    insert(servers, tag + "x", 1, "stream_v2")      # another tag's rows do not count
    assert bench.rows_check(servers, tag, 0, 3, 3) == (3, None)


@pytest.mark.parametrize("script,per_req,args", [
    ("one_record.lua", 1, ("/upload_health_data",)),
    ("hundred_records.lua", 100, ()),
])
def test_wrk_scripts_repeat_no_key_across_threads(stack, script, per_req, args):
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (scripts/bench_deps.sh installs it)")
    stack.producer()                                # ratio 0: the legacy path
    tag = f"WK{uuid.uuid4().hex[:6]}"
    r = bench.wrk(stack.url + "/", script, 1, conns=8, args=args + (tag,))
    assert r["errors"] == 0 and r["ok"] > 0, r
    # Every 200 stored; beyond, at most the requests in flight when wrk stopped.
    n, bad = bench.rows_check(stack.s, tag, 0, r["ok"] * per_req, (r["total"] + 8) * per_req)
    assert bad is None, (n, r)


def backlog_of(samples):
    b = bench.Backlog.__new__(bench.Backlog)    # no Redis: only the samples matter
    b.samples = samples
    return b


def test_sustained_verdict_sees_a_backlog_that_grows_late():
    """A run whose backlog is flat for its first half and then grows by 300
    entries/s is not sustained; a bounded, noisy backlog is."""
    late = [(t * 0.5, 100 if t < 60 else 100 + (t - 60) * 150) for t in range(120)]
    assert bench.Backlog.growth(backlog_of(late)) == pytest.approx(300, rel=0.01)
    noisy = [(t * 0.5, 500 + (t % 7) * 40) for t in range(120)]
    assert abs(bench.Backlog.growth(backlog_of(noisy))) < 10
    assert bench.Backlog.growth(backlog_of([(0, 5)])) == 0.0

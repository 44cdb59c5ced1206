"""Downstream readers and historical data (issue 16 part 4): the old
service's queries run unmodified against the compatibility views (migration
003), readings of months without a partition create that month's partition,
and scripts/import back-fills old CSV exports through the store path."""
import datetime as dt
import os
import re
import subprocess
import uuid

import psycopg
import pytest

from conftest import TOP, wait_for

IMPORT = os.path.join(TOP, "scripts", "import")
REPORT_ROLE = "ljwx_report"


def serial(tag):
    return f"C-{tag}-{uuid.uuid4().hex[:10]}"


def utc(*a):
    return dt.datetime(*a, tzinfo=dt.timezone.utc)


def month_ago(n, day=15):
    """Noon UTC on 'day' of the month n months before this one."""
    now = dt.datetime.now(dt.timezone.utc)
    y, m = divmod(now.year * 12 + now.month - 1 - n, 12)
    return utc(y, m + 1, day, 12)


def partition_of(servers, sn):
    return servers.sql("SELECT DISTINCT tableoid::regclass::text FROM t_user_health_data"
                       " WHERE device_sn = %s", (sn,))


@pytest.fixture(scope="module")
def report_dsn(servers):
    """The read-only reporting role, set up as docs/schema.md says."""
    with psycopg.connect(f"host=127.0.0.1 port={servers.pg_port} dbname=ljwx user=postgres",
                         autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                         (REPORT_ROLE,)).fetchall():
            c.execute(f"CREATE ROLE {REPORT_ROLE} LOGIN")
        c.execute(f"GRANT CONNECT ON DATABASE ljwx TO {REPORT_ROLE}")
        c.execute(f"GRANT USAGE ON SCHEMA legacy TO {REPORT_ROLE}")
        c.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA legacy TO {REPORT_ROLE}")
        c.execute(f"ALTER ROLE {REPORT_ROLE} SET search_path = legacy, public")
    return f"host=127.0.0.1 port={servers.pg_port} dbname=ljwx user={REPORT_ROLE}"


def as_report(dsn, query, params=None):
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else None


def run_import(servers, *args, stdin=None, timeout=120):
    env = dict(os.environ, LJ_PG_DSN=servers.client_dsn, LJ_PG_POOLED=servers.client_pooled,
               LJ_LOG_LEVEL="warn", ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86",
               LJ_BIN_DIR=os.environ.get("LJ_BIN_DIR", os.path.join(TOP, "build", "asan")))
    return subprocess.run([IMPORT] + list(args), input=stdin, env=env, capture_output=True,
                          text=True, timeout=timeout)


def summary(out):
    m = re.search(r"lines=(\d+) stored=(\d+) duplicates=(\d+) rejected=(\d+)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


# -- 1. the old queries, unmodified -------------------------------------------------

def test_old_queries_run_unmodified_as_the_report_role(stack, report_dsn):
    stack.producer()
    stack.consumer()
    sn = serial("old")
    t0 = utc(2025, 11, 3, 8)
    body = {"data": [{"deviceSn": sn, "heartRate": 150, "bloodOxygen": 80,
                      "body_temperature": 38.0, "timestamp": int(t0.timestamp())},
                     {"deviceSn": sn, "heartRate": 45, "timestamp": int(t0.timestamp()) + 60},
                     {"deviceSn": sn, "heartRate": 70, "timestamp": int(t0.timestamp()) + 120}],
            "batchId": "old-b1"}
    assert stack.post("/upload_health_data_v2", body).status_code == 200
    assert stack.post("/upload_common_event_v2", {"deviceSn": sn, "eventType": "SOS",
                                                  "timestamp": int(t0.timestamp())}
                      ).status_code == 200
    assert stack.post("/upload_common_event_v2", {"deviceSn": sn, "eventType": "FALL_DOWN",
                                                  "timestamp": int(t0.timestamp())}
                      ).status_code == 200
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s",
                                 (sn,)) == [(6,)], timeout=20, what="rows and alerts")

    # As the old reports wrote them.
    got = as_report(report_dsn,
                    "SELECT device_sn, timestamp, heart_rate, blood_oxygen, body_temperature"
                    " FROM t_user_health_data WHERE timestamp >= %s AND device_sn = %s"
                    " ORDER BY timestamp", (t0, sn))
    assert [(r[1], r[2]) for r in got] == [(t0, 150), (t0 + dt.timedelta(seconds=60), 45),
                                           (t0 + dt.timedelta(seconds=120), 70)]
    assert got[0][3] == 80 and got[0][4] == 38.0
    assert as_report(report_dsn, "SELECT count(*) FROM t_user_health_data"
                                 " WHERE batch_id = 'old-b1' AND device_sn = %s", (sn,)) == [(3,)]

    def count(alert_type):
        return as_report(report_dsn, "SELECT count(*) FROM t_alert_info WHERE alert_type = %s"
                                     " AND occur_at >= %s AND device_sn = %s",
                         (alert_type, t0, sn))[0][0]
    assert count("heart_rate_abnormal") == 2
    assert count("blood_oxygen_low") == 1
    assert count("body_temperature_high") == 1
    assert count("sos_alert") == 1
    assert count("fall_detected") == 1
    assert count("heart_rate") == 0     # our own value is not what the old reports see

    # Read-only: the role cannot write through the views nor read past them.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_report(report_dsn, "DELETE FROM t_user_health_data WHERE device_sn = %s", (sn,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_report(report_dsn, "SELECT count(*) FROM public.t_user_health_data")
    # Our own sessions still see our own names.
    assert stack.s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn = %s"
                       " AND alert_type = 'heart_rate'", (sn,)) == [(2,)]


def test_every_alert_rule_has_an_old_alert_type(servers):
    got = dict(servers.sql("SELECT rule_name, legacy.alert_type_of(coalesce(event_type, metric))"
                           " FROM t_alert_rule"))
    assert got == {
        "heart_rate_high_major": "heart_rate_abnormal", "heart_rate_high": "heart_rate_abnormal",
        "heart_rate_low_major": "heart_rate_abnormal", "heart_rate_low": "heart_rate_abnormal",
        "blood_oxygen_critical": "blood_oxygen_low", "blood_oxygen_low": "blood_oxygen_low",
        "temperature_high": "body_temperature_high",
        "event_sos": "sos_alert", "event_fall": "fall_detected"}
    # The metrics a rule may name but none is seeded for, and unknown events.
    assert servers.sql("SELECT legacy.alert_type_of('pressure_high'),"
                       " legacy.alert_type_of('pressure_low'), legacy.alert_type_of('stress'),"
                       " legacy.alert_type_of('LOW_BATTERY'), legacy.alert_type_of('WEIRD')") \
        == [("blood_pressure_abnormal", "blood_pressure_abnormal", "stress_high",
             "low_battery", "weird")]


def plan(dsn, query, setup=()):
    with psycopg.connect(dsn, autocommit=True) as c:
        for s in setup:
            c.execute(s)
        return "\n".join(r[0] for r in c.execute("EXPLAIN " + query).fetchall())


def test_view_predicates_prune_partitions_and_use_indexes(servers, report_dsn):
    t = month_ago(0)
    text = plan(report_dsn, "SELECT * FROM t_user_health_data WHERE timestamp >= '%s'"
                            " AND timestamp < '%s'" % (t, t + dt.timedelta(hours=1)))
    scanned = set(re.findall(r" on (t_user_health_data\w*)", text))
    assert scanned == {"t_user_health_data_" + t.strftime("%Y%m")}, text
    text = plan(report_dsn, "SELECT * FROM t_user_health_data WHERE user_id = 7"
                            " AND timestamp >= '%s' AND timestamp < '%s'"
                            % (t, t + dt.timedelta(hours=1)), ["SET enable_seqscan = off"])
    assert "t_user_health_data_" + t.strftime("%Y%m") in text and "Seq Scan" not in text, text
    text = plan(report_dsn, "SELECT count(*) FROM t_alert_info"
                            " WHERE alert_type = 'heart_rate_abnormal' AND occur_at >= now()",
                ["SET enable_seqscan = off"])
    assert "t_alert_info_legacy_type_time_idx" in text, text


# -- 2. readings of months without a partition ---------------------------------------

def test_reading_13_months_ago_gets_its_own_partition_on_both_paths(stack):
    stack.producer()
    stack.consumer()
    old = month_ago(13)
    older = month_ago(14)
    sn_stream, sn_legacy = serial("m13"), serial("m14")
    assert stack.post("/upload_health_data_v2",
                      {"deviceSn": sn_stream, "heartRate": 70,
                       "timestamp": int(old.timestamp())}).status_code == 200
    r = stack.post("/upload_health_data", {"deviceSn": sn_legacy, "heartRate": 70,
                                           "timestamp": int(older.timestamp())})
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    wait_for(lambda: partition_of(stack.s, sn_stream), timeout=20, what="the stream row")
    assert partition_of(stack.s, sn_stream) == [("t_user_health_data_" + old.strftime("%Y%m"),)]
    assert partition_of(stack.s, sn_legacy) == \
        [("t_user_health_data_" + older.strftime("%Y%m"),)]


def test_rows_already_in_the_default_partition_move_to_the_new_month(servers):
    sn_old, sn_new = serial("dflt"), serial("dflt")
    when = utc(2012, 5, 9, 10)
    # As before this change: a row of a month without partition sat in the default.
    servers.sql("INSERT INTO t_user_health_data (device_sn, ts, heart_rate, upload_method)"
                " VALUES (%s, %s, 60, 'optimized')", (sn_old, when))
    assert partition_of(servers, sn_old) == [("t_user_health_data_default",)]
    csv = "device_sn,timestamp,heart_rate\n%s,%d,61\n" % (sn_new, when.timestamp() + 60)
    r = run_import(servers, stdin=csv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert partition_of(servers, sn_old) == [("t_user_health_data_201205",)]
    assert partition_of(servers, sn_new) == [("t_user_health_data_201205",)]
    assert servers.sql("SELECT count(*) FROM t_user_health_data_default"
                       " WHERE ts >= '2012-05-01' AND ts < '2012-06-01'") == [(0,)]


def test_two_workers_back_filling_one_new_month_both_succeed(servers, tmp_path):
    """Two import processes (each its own connection through the store) create
    the same missing months at once: both succeed, every row in its month."""
    sn_a, sn_b = serial("race"), serial("race")
    base = int(utc(2013, 7, 1).timestamp())
    files = []
    for sn in (sn_a, sn_b):
        p = tmp_path / f"{sn}.csv"
        lines = ["deviceSn,timestamp,heartRate"]
        # 3 months (201307..201309), in batches of 50 rows: many month checks.
        lines += ["%s,%d,%d" % (sn, base + i * 3000, 60 + i % 40) for i in range(2400)]
        p.write_text("\n".join(lines) + "\n")
        files.append(p)
    env = dict(os.environ, LJ_PG_DSN=servers.client_dsn, LJ_PG_POOLED=servers.client_pooled,
               LJ_LOG_LEVEL="warn", LJ_BIN_DIR=os.environ.get("LJ_BIN_DIR", os.path.join(TOP, "build", "asan")))
    procs = [subprocess.Popen([IMPORT, "--import-batch", "50", "--file", str(f)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for f in files]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [summary(o) for o in outs] == [(2400, 2400, 0, 0)] * 2
    got = servers.sql("SELECT tableoid::regclass::text, count(*) FROM t_user_health_data"
                      " WHERE device_sn IN (%s, %s) GROUP BY 1 ORDER BY 1", (sn_a, sn_b))
    assert [g[0] for g in got] == ["t_user_health_data_201307", "t_user_health_data_201308",
                                   "t_user_health_data_201309"], got
    assert sum(g[1] for g in got) == 4800


def test_two_consumer_workers_back_filling_new_months_both_succeed(stack):
    """Entries of months without partitions, waiting in the stream, are read
    by two workers at once: every reading lands in its month, none in the
    default partition, none dead-lettered."""
    stack.producer()
    sn = serial("w2")
    # four months inside the upload paths' window (--partition-window-months 24)
    first = month_ago(22, day=1).replace(hour=0)
    base = int(first.timestamp())
    for i in range(40):     # 40 entries x 50 readings over four months from 'first'
        body = [{"deviceSn": f"{sn}-{i % 4}", "heartRate": 70,
                 "timestamp": base + (i * 50 + j) * 4000} for j in range(50)]
        assert stack.post("/upload_health_data_v2", body).status_code == 200
    stack.consumer("--workers", "2", "--batch-size", "5", "--batch-adaptive", "0")
    wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE %s",
                                 (sn + "-%",)) == [(2000,)], timeout=60, what="2000 rows")
    got = stack.s.sql("SELECT tableoid::regclass::text, count(*) FROM t_user_health_data"
                      " WHERE device_sn LIKE %s GROUP BY 1 ORDER BY 1", (sn + "-%",))
    assert [g[0] for g in got] == ["t_user_health_data_" + month_ago(22 - k).strftime("%Y%m")
                                   for k in range(4)], got
    assert stack.s.redis().xlen(stack.stream() + ":dead") == 0


def partitions(servers):
    return servers.sql("SELECT count(*) FROM pg_inherits"
                       " WHERE inhparent = 't_user_health_data'::regclass")[0][0]


def partition_names(servers):
    return set(servers.sql("SELECT inhrelid::regclass::text FROM pg_inherits"
                           " WHERE inhparent = 't_user_health_data'::regclass"))


def test_one_upload_of_200_old_months_creates_no_partition_on_either_path(stack):
    """Any device may send readings dated anywhere in 2000..2099, and each new
    month is a CREATE TABLE under an EXCLUSIVE lock on the parent: the upload
    paths create months only in their window (24 back, 3 ahead); older
    readings are stored in the default partition."""
    stack.producer()
    stack.consumer()
    before = partition_names(stack.s)
    for path, tag in (("/upload_health_data", "pm-l"), ("/upload_health_data_v2", "pm-s")):
        requests_ratio(stack, 0 if path == "/upload_health_data" else 1)
        sn = serial(tag)
        recs = [{"deviceSn": sn, "heartRate": 70,
                 "timestamp": int(utc(2001 + i // 12, i % 12 + 1, 15).timestamp())}
                for i in range(200)]                 # 200 months of 2001 .. 2017
        r = stack.post(path, {"data": recs}, timeout=60)
        assert r.status_code == 200, r.text
        wait_for(lambda: stack.s.sql("SELECT count(*) FROM t_user_health_data"
                                     " WHERE device_sn = %s", (sn,)) == [(200,)],
                 timeout=30, what="200 rows")
        # in the default partition, or in a month made before (by ljwx-import)
        assert set(partition_of(stack.s, sn)) <= before | {("t_user_health_data_default",)}
    assert partition_names(stack.s) == before


def test_one_batch_creates_a_few_new_months_and_later_batches_the_rest(stack):
    """Inside the window a batch asks for at most --partition-new-months (3)
    missing months; their readings wait in the default partition, and later
    batches create the rest and move them there."""
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=0, LJ_LEGACY_WRITERS=1)   # one connection's cache
    sn = serial("cap")
    months = [month_ago(n) for n in range(24, 16, -1)]     # 8 months, 24 .. 17 ago
    body = {"data": [{"deviceSn": sn, "heartRate": 70, "timestamp": int(m.timestamp())}
                     for m in months]}
    missing = [m for m in months if not servers_has(stack.s, m)]
    before = partitions(stack.s)
    r = stack.post("/upload_health_data", body)
    assert r.status_code == 200 and r.json()["inserted"] == 8, r.text
    assert min(1, len(missing)) <= partitions(stack.s) - before <= 3, (before, missing)
    for _ in range(3):       # the same upload again: duplicates, and 3 more months each
        r = stack.post("/upload_health_data", body)
        assert r.status_code == 200 and r.json()["duplicates"] == 8, r.text
    assert partition_of(stack.s, sn) == sorted(
        [("t_user_health_data_" + m.strftime("%Y%m"),) for m in months])


def test_partition_window_option_bounds_the_months_created(stack):
    stack.producer(LJ_INITIAL_RATIO_PERMILLE=0, LJ_PARTITION_WINDOW_MONTHS=2)
    out, inside = month_ago(5), month_ago(2)
    had_out = servers_has(stack.s, out)
    sn_out, sn_in = serial("w-out"), serial("w-in")
    for sn, when in ((sn_out, out), (sn_in, inside)):
        r = stack.post("/upload_health_data", {"deviceSn": sn, "heartRate": 70,
                                               "timestamp": int(when.timestamp())})
        assert r.status_code == 200, r.text
    assert servers_has(stack.s, out) == had_out
    if not had_out:
        assert partition_of(stack.s, sn_out) == [("t_user_health_data_default",)]
    assert partition_of(stack.s, sn_in) == [("t_user_health_data_" + inside.strftime("%Y%m"),)]


def servers_has(servers, when):
    return servers.sql("SELECT to_regclass(%s) IS NOT NULL",
                       ("t_user_health_data_" + when.strftime("%Y%m"),))[0][0]


def requests_ratio(stack, ratio):
    resp = stack.post("/api/stream_traffic_ratio", {"ratio": ratio})
    assert resp.status_code == 200, resp.text
    wait_for(lambda: stack.get("/api/stream_traffic_ratio").json()["current_ratio"] == ratio,
             what=f"ratio {ratio}")


def test_a_reader_of_the_default_partition_holds_no_insert_behind_a_new_month(servers):
    """Creating a month locks the parent EXCLUSIVE (every insert waits) and
    the default partition ACCESS EXCLUSIVE. Migration 006: with a reader on
    the default partition the creation gives up at once (55P03) instead of
    waiting its lock_timeout (5 s) with the parent locked; an insert started
    meanwhile is not held."""
    import threading
    import time
    month = "DATE '2099-11-01'"      # no test makes it (outside every window)
    blocker = psycopg.connect(servers.dsn)
    held = {}

    def insert():
        t0 = time.monotonic()
        servers.sql("INSERT INTO t_user_health_data (device_sn, ts, upload_method)"
                    " VALUES (%s, now(), 'optimized')", (serial("ins"),))
        held["s"] = time.monotonic() - t0
    try:
        blocker.execute("SELECT count(*) FROM t_user_health_data_default")   # ACCESS SHARE
        t0 = time.monotonic()
        t = threading.Thread(target=lambda: (time.sleep(0.3), insert()))
        t.start()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            servers.sql(f"SELECT ensure_health_months(ARRAY[{month}])")
        took = time.monotonic() - t0
        t.join(30)
    finally:
        blocker.rollback()
        blocker.close()
    assert took < 2.5, f"the creation waited {took:.1f} s for the reader"
    assert held.get("s", 99) < 2.5, held
    assert servers.sql("SELECT to_regclass('t_user_health_data_209911')") == [(None,)]


def test_a_month_created_while_another_waits_is_seen_not_created_twice(servers):
    """The second of two callers for one month waits for the first (advisory
    lock) and must then see its committed partition (it once saw its stale
    catalog cache and failed with 42P07 duplicate_table)."""
    import threading
    first = psycopg.connect(servers.dsn)
    outcome = {}

    def second():
        try:
            outcome["created"] = servers.sql("SELECT ensure_health_months("
                                             "ARRAY[DATE '2017-05-01', DATE '2017-06-01'])")
        except Exception as e:     # noqa: BLE001 -- reported below
            outcome["error"] = e
    try:
        # The first holds the creators' lock (as inside its call), the second
        # finds the month missing and waits; the first creates it, commits.
        first.execute("SELECT pg_advisory_xact_lock(7262022)")
        t = threading.Thread(target=second)
        t.start()
        wait_for(lambda: servers.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                     " AND NOT granted") == [(1,)], timeout=10,
                 what="the second caller to wait")
        assert first.execute("SELECT ensure_health_months(ARRAY[DATE '2017-05-01'])"
                             ).fetchall() == [(1,)]
        first.commit()
        t.join(30)
    finally:
        first.close()
    assert "error" not in outcome, outcome
    assert outcome["created"] == [(1,)]     # only 2017-06: 2017-05 was there


# -- 3. scripts/import ---------------------------------------------------------------

OLD_HEADER = ("id,device_sn,timestamp,heart_rate,blood_oxygen,body_temperature,"
              "pressure_high,pressure_low,step,sleep_data,upload_method,user_id,create_time")


def test_import_twice_stores_once_and_counts_duplicates(servers):
    sn = serial("imp")
    t = utc(2011, 3, 4, 5, 6, 7)
    lines = [OLD_HEADER]
    for i in range(120):
        lines.append('%d,%s,%s,%d,97,36.6,120,80,%d,"{""deep"":%d}",wifi,999,2011-03-05 00:00:00'
                     % (1000 + i, sn, (t + dt.timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"),
                        60 + i % 30, i, i))
    lines.append('9999,%s,%s,150,97,,,,,,4g,,' % (sn, "2011-03-04 09:00:00"))    # an alert
    csv = "\r\n".join(lines) + "\r\n"
    first = run_import(servers, stdin=csv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary(first.stdout) == (121, 121, 0, 0)
    second = run_import(servers, stdin=csv)
    assert second.returncode == 0, second.stdout + second.stderr
    assert summary(second.stdout) == (121, 0, 121, 0)
    assert servers.sql("SELECT count(*), count(DISTINCT ts), min(upload_method),"
                       " max(upload_method), min(source_method), max(source_method),"
                       " count(*) FILTER (WHERE pressure_high = 120 AND pressure_low = 80"
                       " AND temperature = 36.6 AND blood_oxygen = 97), max(user_id)"
                       " FROM t_user_health_data WHERE device_sn = %s", (sn,)) == \
        [(121, 121, "import", "import", "4g", "wifi", 120, None)]
    assert servers.sql("SELECT ts, sleep FROM t_user_health_data WHERE device_sn = %s"
                       " ORDER BY ts LIMIT 1", (sn,)) == [(t, '{"deep":0}')]
    assert partition_of(servers, sn) == [("t_user_health_data_201103",)]
    # Alerts are recorded like any other, but as history: not NEW for operators.
    assert servers.sql("SELECT alert_type, level, status FROM t_alert_info"
                       " WHERE device_sn = %s", (sn,)) == [("heart_rate", "major", "IMPORTED")]


def test_import_reports_bad_lines_by_number_and_stores_the_rest(servers, tmp_path):
    sn = serial("bad")
    csv = tmp_path / "bad.csv"
    csv.write_text("deviceSn,timestamp,heartRate\n"
                   f"{sn},2010-01-01 00:00:00,70\n"
                   f"{sn},2010-01-01 00:01:00,900\n"          # line 3: out of range
                   f"{sn},2010-01-01 00:02:00\n"              # line 4: a column short
                   f",2010-01-01 00:03:00,70\n"               # line 5: no device
                   f"{sn},,70\n"                              # line 6: no timestamp
                   f"{sn},2010-01-01 00:04:00,\"7\"0\"\n"     # line 7: bad quoting
                   f"{sn},2010-01-01 00:05:00,71\n")
    r = run_import(servers, "--file", str(csv))
    assert r.returncode == 1, r.stdout + r.stderr
    assert summary(r.stdout) == (7, 2, 0, 5)
    for line, why in ((3, "heart_rate out of range"), (4, "3 columns"), (5, "device_sn"),
                      (6, "timestamp"), (7, "quote")):
        assert re.search(r"line %d: .*%s" % (line, why), r.stderr), (line, r.stderr)
    assert servers.sql("SELECT heart_rate FROM t_user_health_data WHERE device_sn = %s"
                       " ORDER BY ts", (sn,)) == [(70,), (71,)]


def test_import_refuses_a_header_without_device_or_time(servers):
    r = run_import(servers, stdin="heart_rate,blood_oxygen\n70,98\n")
    assert r.returncode == 2 and "header" in r.stderr, r.stdout + r.stderr
    r = run_import(servers, "--file", "/nonexistent/x.csv")
    assert r.returncode == 2 and "/nonexistent/x.csv" in r.stderr, r.stdout + r.stderr


def test_a_month_that_cannot_be_created_yet_goes_to_the_default_then_moves(servers):
    """A long reader of the default partition holds off the creation
    (lock_timeout): the readings are still stored (default partition), and
    the next batch of that month creates it and moves them."""
    sn = serial("lock")
    blocker = psycopg.connect(servers.dsn)
    try:
        blocker.execute("SELECT count(*) FROM t_user_health_data_default")   # ACCESS SHARE
        r = run_import(servers, stdin="device_sn,timestamp,heart_rate\n%s,2014-02-03 04:05:06,70\n"
                                      % sn)
        assert r.returncode == 0, r.stdout + r.stderr
        assert summary(r.stdout) == (1, 1, 0, 0)
        assert "ensure_health_months" in r.stderr and "default partition" in r.stderr, r.stderr
        assert partition_of(servers, sn) == [("t_user_health_data_default",)]
    finally:
        blocker.rollback()
        blocker.close()
    r = run_import(servers, stdin="device_sn,timestamp,heart_rate\n%s,2014-02-03 04:05:07,71\n"
                                  % sn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert partition_of(servers, sn) == [("t_user_health_data_201402",)]


def test_ingest_role_of_the_docs_creates_months_and_without_execute_still_stores(servers):
    """The grants of docs/schema.md let an ingest role create a month
    (SECURITY DEFINER); without EXECUTE the readings go to the default
    partition, with one error per connection, and nothing is refused."""
    role = "ljwx_ingest_t"
    with psycopg.connect(f"host=127.0.0.1 port={servers.pg_port} dbname=ljwx user=postgres",
                         autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchall():
            c.execute(f"CREATE ROLE {role} LOGIN")
        with open(os.path.join(TOP, "docs", "schema.md")) as f:
            doc = f.read()
        block = re.search(r"## Grants for an ingest role.*?```sql\n(.*?)```", doc, re.S).group(1)
        for stmt in re.sub(r"--[^\n]*", "", block).split(";"):
            stmt = stmt.strip()
            if stmt and not stmt.startswith("CREATE ROLE"):
                c.execute(stmt.replace("ljwx_ingest", role))
    dsn = f"host=127.0.0.1 port={servers.pg_port} dbname=ljwx user={role}"
    sn = serial("role")
    r = run_import_as(dsn, "device_sn,timestamp,heart_rate\n%s,2015-06-01 00:00:00,70\n" % sn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert partition_of(servers, sn) == [("t_user_health_data_201506",)]
    servers.sql(f"REVOKE EXECUTE ON FUNCTION ensure_health_months(date[]) FROM {role}")
    try:
        r = run_import_as(dsn, "device_sn,timestamp,heart_rate\n"
                               "%s,2015-07-01 00:00:00,70\n%s,2015-08-01 00:00:00,70\n" % (sn, sn),
                          "--import-batch", "1")
    finally:
        servers.sql(f"GRANT EXECUTE ON FUNCTION ensure_health_months(date[]) TO {role}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(r.stdout) == (2, 2, 0, 0)
    assert r.stderr.count("EXECUTE granted?") == 1, r.stderr
    assert servers.sql("SELECT tableoid::regclass::text FROM t_user_health_data"
                       " WHERE device_sn = %s ORDER BY ts", (sn,)) == \
        [("t_user_health_data_201506",), ("t_user_health_data_default",),
         ("t_user_health_data_default",)]


def run_import_as(dsn, csv, *args):
    env = dict(os.environ, LJ_PG_DSN=dsn, LJ_LOG_LEVEL="warn",
               LJ_BIN_DIR=os.environ.get("LJ_BIN_DIR", os.path.join(TOP, "build", "asan")))
    return subprocess.run([IMPORT] + list(args), input=csv, env=env, capture_output=True,
                          text=True, timeout=120)


def test_migration_003_runs_again_by_hand(servers):
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                        "-d", servers.dsn, "-f", os.path.join(TOP, "migrations", "003_compat.sql")],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))
    assert r.returncode == 0, r.stderr
    assert servers.sql("SELECT legacy.alert_type_of('SOS')") == [("sos_alert",)]

"""Indexes for the old service's report queries (issue 19): what each costs
the consumer's inserts and what it saves the report (a benchmark, not a test).

    /usr/bin/python3 tests/bench/bench_indexes.py [--records N] [--repeat R]
                                                  [--rows M] [--skip-drain]

Starts its own Redis and PostgreSQL (the integration harness, fsync=off),
applies migrations/ and then takes the candidate indexes (CANDIDATES) off
again, so each variant starts from the same schema:

1. Insert cost: the consumer (release build, 2 workers) drains N records
   (devices bound to 100 customers and 400 orgs, every entry with a batchId:
   the worst case for the batch_id index) with no candidate, each candidate
   alone, and all of them; the variants interleaved, R times, since the
   machine is shared. Reports rows/s min/median/max per variant and the
   median's cost against none.
2. The same variants, server-side: INSERT ... SELECT of 500,000 generated
   rows (no client in the way: the index's own cost), R rounds.
3. Query time: M rows over 90 days (generate_series: 2,000 devices, one
   batch per device and day), EXPLAIN ANALYZE of each report query, median
   of 5, without and with its index.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from conftest import TOP, Servers  # noqa: E402
import bench_consumer  # noqa: E402

BINARY = os.path.join(TOP, "build", "ljwx-consumer")

# name -> its CREATE INDEX (as migrations/010_report_indexes.sql has it).
CANDIDATES = {
    "customer_ts": "CREATE INDEX t_user_health_data_customer_ts_idx"
                   " ON t_user_health_data (customer_id, ts)",
    "org_ts": "CREATE INDEX t_user_health_data_org_ts_idx ON t_user_health_data (org_id, ts)",
    "batch_id": "CREATE INDEX t_user_health_data_batch_id_idx ON t_user_health_data (batch_id)"
                " WHERE batch_id IS NOT NULL",
}

T0 = "2026-06-01 00:00:00+00"
QUERIES = {
    "customer_ts": ("one customer's week, per day",
                    "SELECT date_trunc('day', ts), count(*), avg(heart_rate)"
                    " FROM t_user_health_data WHERE customer_id = 7"
                    f" AND ts >= '{T0}'::timestamptz + interval '30 days'"
                    f" AND ts < '{T0}'::timestamptz + interval '37 days' GROUP BY 1"),
    "org_ts": ("one org's week, per day",
               "SELECT date_trunc('day', ts), count(*), avg(heart_rate)"
               " FROM t_user_health_data WHERE org_id = 42"
               f" AND ts >= '{T0}'::timestamptz + interval '30 days'"
               f" AND ts < '{T0}'::timestamptz + interval '37 days' GROUP BY 1"),
    "batch_id": ("one upload batch",
                 "SELECT * FROM t_user_health_data WHERE batch_id = 'B0777-045'"),
    "create_time": ("rows created in one day (BRIN of migration 004)",
                    "SELECT count(*), count(DISTINCT device_sn) FROM t_user_health_data"
                    f" WHERE create_time >= '{T0}'::timestamptz + interval '45 days'"
                    f" AND create_time < '{T0}'::timestamptz + interval '46 days'"),
}


def drop_candidates(s):
    for sql in CANDIDATES.values():
        s.sql("DROP INDEX IF EXISTS " + sql.split()[2])


def bind_devices(s):
    s.sql("INSERT INTO sys_user (user_name, device_sn, customer_id)"
          " SELECT 'u' || i, 'BENCH-' || lpad(i::text, 4, '0'), i % 100"
          " FROM generate_series(0, 999) i")
    s.sql("INSERT INTO sys_user_org (user_id, org_id, customer_id)"
          " SELECT id, id % 400, customer_id FROM sys_user")


def variants_of(only):
    v = [("none", [])] + [(n, [n]) for n in CANDIDATES] + [("all", list(CANDIDATES))]
    return [x for x in v if not only or x[0] in only.split(",")]


def insert_cost(s, tmp, records, repeat, only):
    variants = variants_of(only)
    rates = {name: [] for name, _ in variants}
    rows = bench_consumer.make_records(records)
    for rnd in range(repeat):
        for name, idx in variants:
            drop_candidates(s)
            for n in idx:
                s.sql(CANDIDATES[n])
            rate = bench_consumer.drain(s, rows, 2, BINARY, tmp, batch_ids=True)
            rates[name].append(rate)
            print(f"  round {rnd + 1} {name:12} {rate:9.0f} rows/s", flush=True)
            s.redis().flushall()
    drop_candidates(s)
    s.sql("TRUNCATE t_user_health_data")
    base = statistics.median(rates["none"])
    print(f"\nconsumer drain, 2 workers, {records:,} rows, {repeat} rounds (rows/s)")
    for name, _ in variants:
        r = rates[name]
        med = statistics.median(r)
        print(f"  {name:12} min {min(r):8.0f}  median {med:8.0f}  max {max(r):8.0f}"
              f"  cost {100 * (1 - med / base):+5.1f}%")


def explain_ms(s, sql, n=5):
    times = []
    for _ in range(n):
        plan = s.sql("EXPLAIN (ANALYZE, TIMING OFF) " + sql)
        line = [p[0] for p in plan if p[0].startswith("Execution Time")][0]
        times.append(float(line.split()[2]))
    return min(times), statistics.median(times), max(times)


def plan_of(s, sql):
    return " / ".join(p[0].strip() for p in s.sql("EXPLAIN " + sql)
                      if "Scan" in p[0])[:160]


def generate(s, rows, devices=2000):
    """'rows' readings over 90 days from T0, in time order (as they arrive),
    every device each step, one batch per device and day."""
    steps = rows // devices
    s.sql("INSERT INTO t_user_health_data (device_sn, ts, user_id, customer_id, org_id,"
          " heart_rate, blood_oxygen, upload_method, batch_id, create_time)"
          " SELECT 'B' || lpad(d::text, 4, '0'), t, d, d % 100, d % 400, 60 + (d + k) % 60, 95,"
          "        'stream_v2',"
          f"       'B' || lpad(d::text, 4, '0') || '-' || lpad((k * 90 / {steps})::text, 3, '0'),"
          "        t + interval '20 seconds'"
          f" FROM generate_series(0, {steps - 1}) k,"
          f"      LATERAL (SELECT '{T0}'::timestamptz + k * (interval '90 days' / {steps})"
          f"              AS t) tt, generate_series(0, {devices - 1}) d")


def sql_insert_cost(s, rows, repeat, only):
    """Server-side INSERT ... SELECT of 'rows' (no client, no Redis: the
    index's own cost, less noisy than a drain)."""
    variants = variants_of(only)
    secs = {name: [] for name, _ in variants}
    for rnd in range(repeat):
        for name, idx in variants:
            s.sql("TRUNCATE t_user_health_data")
            drop_candidates(s)
            for n in idx:
                s.sql(CANDIDATES[n])
            t = time.monotonic()
            generate(s, rows)
            secs[name].append(time.monotonic() - t)
    drop_candidates(s)
    s.sql("TRUNCATE t_user_health_data")
    base = statistics.median(secs["none"])
    print(f"\nINSERT ... SELECT of {rows:,} rows, {repeat} rounds (rows/s)")
    for name, _ in variants:
        r = [rows / x for x in secs[name]]
        med = rows / statistics.median(secs[name])
        print(f"  {name:12} min {min(r):8.0f}  median {med:8.0f}  max {max(r):8.0f}"
              f"  cost {100 * (1 - base / statistics.median(secs[name])):+5.1f}%")


def query_time(s, rows):
    s.sql("TRUNCATE t_user_health_data")
    s.sql("SELECT ensure_health_months(ARRAY(SELECT d::date FROM generate_series("
          f"'{T0}'::timestamptz, '{T0}'::timestamptz + interval '90 days', interval '1 month')"
          " d))")
    t = time.monotonic()
    # Readings in time order (as they arrive), every device each step.
    generate(s, rows)
    s.sql("VACUUM ANALYZE t_user_health_data")
    print(f"\n{rows:,} rows generated in {time.monotonic() - t:.0f} s")
    print("query time, EXPLAIN ANALYZE, ms (min / median / max of 5)")
    for name, (what, sql) in QUERIES.items():
        before = explain_ms(s, sql)
        plan0 = plan_of(s, sql)
        if name in CANDIDATES:
            t = time.monotonic()
            s.sql(CANDIDATES[name])
            s.sql("ANALYZE t_user_health_data")
            built = time.monotonic() - t
            after = explain_ms(s, sql)
            print(f"  {name:12} {what}: without {before[0]:.1f} / {before[1]:.1f} / "
                  f"{before[2]:.1f}   with {after[0]:.1f} / {after[1]:.1f} / {after[2]:.1f}"
                  f"   (built in {built:.1f} s)")
            print(f"      plan without: {plan0}\n      plan with:    {plan_of(s, sql)}")
        else:
            print(f"  {name:12} {what}: {before[0]:.1f} / {before[1]:.1f} / {before[2]:.1f}")
            print(f"      plan: {plan0}")
    size = s.sql("SELECT pg_size_pretty(sum(pg_relation_size(indexrelid))) FROM pg_index"
                 " WHERE indrelid IN (SELECT inhrelid FROM pg_inherits"
                 " WHERE inhparent = 't_user_health_data'::regclass)"
                 " AND indexrelid::regclass::text ~ '(customer_id_ts|org_id_ts|batch_id)_idx'")
    print(f"  size of the three indexes on {rows:,} rows: {size[0][0]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--skip-drain", action="store_true")
    ap.add_argument("--variants", default="",
                    help="comma list of none,customer_ts,org_ts,batch_id,all (default: all five)")
    ap.add_argument("--skip-query", action="store_true")
    ap.add_argument("--insert-rows", type=int, default=500_000,
                    help="rows of the server-side INSERT cost (0: skip)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ljwx-bench-idx-")
    s = Servers(tmp)
    try:
        bench_consumer.start_servers(s)
        drop_candidates(s)
        bind_devices(s)
        if not args.skip_drain:
            insert_cost(s, tmp, args.records, args.repeat, args.variants)
        if args.insert_rows:
            sql_insert_cost(s, args.insert_rows, args.repeat, args.variants)
        if not args.skip_query:
            query_time(s, args.rows)
    finally:
        s.stop_redis()
        s.stop_pg()


if __name__ == "__main__":
    main()

"""Consumer drain rate next to a plain `psql \\copy` of the same rows into the
same table, in one run on this machine (a benchmark, not a test).

    /usr/bin/python3 tests/bench/bench_consumer.py [--records N] [--workers 1,2]
        [--binary B ...] [--rounds R] [--durable] [--pre-sql SQL ...]

Starts its own Redis and PostgreSQL (the integration harness), loads a
backlog of N records (entries of 100 records, 1,000 devices), and times how
fast 1, 2, ... workers drain it into t_user_health_data (enrichment and
alerts on, as in production). Prints one line per run and the ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import BIN, Servers, free_port  # noqa: E402

PER_ENTRY = 100
BASE_MS = 1_750_000_000_000


def make_records(n):
    return [{"device_sn": f"BENCH-{i % 1000:04d}", "ts": BASE_MS + i * 1000,
             "heart_rate": 60 + i % 50, "blood_oxygen": 95 + i % 5,
             "temperature": 36.0 + (i % 10) / 10, "step": i, "source_method": "api"}
            for i in range(n)]


def copy_reference(servers, records, tmp, streams=1):
    """psql \\copy's rows/s for 'records' into the emptied table; with
    'streams' > 1, that many psql at once, each a share of the rows."""
    paths = [os.path.join(tmp, f"rows-{k}.tsv") for k in range(streams)]
    files = [open(p, "w") for p in paths]
    for i, r in enumerate(records):
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["ts"] // 1000))
        files[i % streams].write(f"{r['device_sn']}\t{ts}+00\t{r['heart_rate']}\t"
                                 f"{r['blood_oxygen']}\t{r['temperature']}\t{r['step']}\t"
                                 "api\tstream_v2\n")
    for f in files:
        f.close()
    servers.sql("TRUNCATE t_user_health_data")
    t0 = time.monotonic()
    procs = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", servers.dsn, "-c",
                               f"\\copy t_user_health_data (device_sn, ts, heart_rate, "
                               f"blood_oxygen, temperature, step, source_method, upload_method)"
                               f" FROM '{p}'"]) for p in paths]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("psql \\copy failed")
    elapsed = time.monotonic() - t0
    got = servers.sql("SELECT count(*) FROM t_user_health_data")[0][0]
    servers.sql("TRUNCATE t_user_health_data")
    if got != len(records):
        raise SystemExit(f"psql \\copy stored {got} rows of {len(records)}")
    return len(records) / elapsed


def load_backlog(r, stream, records, batch_ids=False):
    """Entries of PER_ENTRY records; with 'batch_ids' each carries a batchId
    (as /upload_health_data_batch uploads do), else none."""
    pipe = r.pipeline(transaction=False)
    for i in range(0, len(records), PER_ENTRY):
        chunk = records[i:i + PER_ENTRY]
        pipe.xadd(stream, {"timestamp": str(int(time.time() * 1000)), "uuid": str(uuid.uuid4()),
                           "device_sn": chunk[0]["device_sn"], "message_type": "health_data",
                           "api_version": "v2", "batch_id": f"BATCH-{i}" if batch_ids else "",
                           "payload": json.dumps(chunk, separators=(",", ":"))})
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()


def drain(servers, records, workers, binary, tmp, batch_ids=False, **extra_env):
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    r = servers.redis()
    load_backlog(r, prefix + "health_data_stream", records, batch_ids)
    servers.sql("TRUNCATE t_user_health_data")
    env = dict(os.environ, LJ_REDIS_PORT=str(servers.redis_port), LJ_PG_DSN=servers.dsn,
               LJ_STREAM_PREFIX=prefix, LJ_STATUS_PORT=str(free_port()),
               LJ_LOG_LEVEL="warn", LJ_DEVICE_WORKERS="0", LJ_EVENT_WORKERS="0")
    env.update({k: str(v) for k, v in extra_env.items()})
    log = open(os.path.join(tmp, f"consumer-{workers}.log"), "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "--workers", str(workers)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        while not drained(r, prefix):
            if time.monotonic() - t0 > 600:
                raise SystemExit("drain did not finish within 600 s")
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
    finally:
        proc.terminate()
        proc.wait(30)
    got = servers.sql("SELECT count(*) FROM t_user_health_data")[0][0]
    if got != len(records):
        raise SystemExit(f"drain stored {got} rows of {len(records)}")
    return len(records) / elapsed


def drained(r, prefix, stream="health_data_stream"):
    """Every entry of 'stream' (a shard's name: health_data_stream:{k}) read
    and acknowledged (so committed): asked of Redis, not by counting rows,
    which would scan the growing table every poll and take PostgreSQL's time
    from the drain being timed."""
    try:
        groups = r.xinfo_groups(prefix + stream)
    except Exception:   # noqa: BLE001 -- no group before the consumer makes it
        return False
    return any(g["name"] == prefix + "health_processors" and g["pending"] == 0
               and g["lag"] == 0 for g in groups)


def start_servers(servers, durable=False):
    """Redis and PostgreSQL of 'servers' started, the schema migrated (the
    caller stops them)."""
    servers.start_redis()
    servers.start_pg(durable=durable)
    servers.create_db()
    servers.migrate()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--binary", action="append",
                    help="consumer binary (repeat to compare builds; runs alternate)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pre-sql", action="append", default=[],
                    help="SQL run once after the migrations (e.g. an index to compare)")
    ap.add_argument("--durable", action="store_true",
                    help="PostgreSQL with fsync, synchronous_commit, full_page_writes on")
    args = ap.parse_args()
    binaries = args.binary or [os.path.join(os.path.dirname(BIN), "ljwx-consumer")]
    tmp = tempfile.mkdtemp(prefix="ljwx-bench-")
    servers = Servers(tmp)
    try:
        start_servers(servers, args.durable)
        for q in args.pre_sql:
            servers.sql(q)
        records = make_records(args.records)
        for _ in range(args.rounds):
            copy_rate = copy_reference(servers, records, tmp)
            print(f"psql \\copy          {args.records:>9} rows  {copy_rate:>10.0f} rows/s  1.00x",
                  flush=True)
            for w in [int(x) for x in args.workers.split(",")]:
                for b in binaries:
                    rate = drain(servers, records, w, b, tmp)
                    servers.redis().flushall()
                    print(f"consumer {w} worker(s) {args.records:>9} rows  {rate:>10.0f} rows/s  "
                          f"{rate / copy_rate:.2f}x  {b}", flush=True)
    finally:
        servers.stop_redis()
        servers.stop_pg()


if __name__ == "__main__":
    main()

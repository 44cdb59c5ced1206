"""`make bench`: every workload of the benchmark issue next to its reference,
in one run on this machine (a benchmark, not a test; not run by CI).

    /usr/bin/python3 tests/bench/bench.py [--quick] [--json build/bench.json]

References: nginx `return 200` (1 worker) receiving the same bodies,
redis-benchmark XADD (~300-byte field, 50 clients, unpipelined and -P 32),
psql \\copy of the same rows into the same table. Workloads: 1 record per
request (wrk, 50 connections), the same with every flow-control check on
and off, 100 records per request (the old stress test's shape), 10,000
keep-alive connections, consumer drains with 1, 2 and 4
workers, end to end at a fixed 5,000 uploads/s (tests/bench/loadgen.c,
open loop), adaptive batches next to a fixed COUNT (latency at low and
5,000/s load, rows/s at saturation), the producer and a drain on one Redis
and on a 3-master Redis Cluster with 1 and 6 stream shards (part cluster),
and the alert notifier's deliveries/s to a local webhook (nginx return
200). All of these on PostgreSQL with fsync=off, as the test harness runs
it.

Then, on PostgreSQL restarted durable (fsync, synchronous_commit,
full_page_writes on: what a user runs), the consumer drains with 1 and 2
workers against psql \\copy (part durable), the whole pipeline's sustained
rate (part sustained: open-loop 1-record uploads at rising rates until the
backlog is not bounded), the legacy path next to the stream
path (parts legacy, stress): wrk 50 connections, 1 record/req to
/upload_health_data and 100 records/req to /upload_health_data_batch, at
ratio 1 (stream path, a 2-worker consumer storing meanwhile) and ratio 0
(legacy path), the 100-record legacy rows/s against psql \\copy of the rows
it stored; and the old service's acceptance stress test (200 users, batches
of 100 records, think 0.2-1.0 s, build/loadgen think) on both paths. Each
row's rows are counted in PostgreSQL (a row of errors is no throughput),
and the targets are printed met or missed.

    bench.py --quick --only legacy,stress [--stress-users N] [--stress-seconds S]

Prints a table and writes JSON (rows, targets).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, HERE)
from conftest import PgBouncer, Servers, free_port  # noqa: E402
import bench_consumer  # noqa: E402

BIN = os.path.join(TOP, "build")
ROWS = []


TARGETS = []
WRK_THREADS = 2
SUSTAINED_RATES = (10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000)


def row(name, value, unit, ref=None, note="", **extra):
    """One table row; 'extra' (path, durable, latencies, the rows check...)
    goes to the JSON only."""
    ratio = value / ref if ref else None
    ROWS.append({"workload": name, "value": value, "unit": unit,
                 "ratio": round(ratio, 3) if ratio else None, "note": note, **extra})
    print(f"{name:<48} {value:>12,.1f} {unit:<10} "
          f"{('%.2fx' % ratio) if ratio else '':>7}  {note}", flush=True)


def target(name, met, value):
    """A target of the issue, met or missed, printed after the table."""
    TARGETS.append({"target": name, "met": bool(met), "value": value})


def wrk(url, script, seconds, conns=50, args=()):
    """wrk's figures; the scripts get the thread count (and 'args') so that
    no two requests of a run repeat a (device_sn, ts) key."""
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "-s", os.path.join(HERE, script), url, "--", str(WRK_THREADS)]
                         + list(args), capture_output=True, text=True, check=True).stdout
    if "Requests/sec" not in out or "Latency Distribution" not in out:
        raise SystemExit(f"bench: unexpected wrk output:\n{out}")

    def lat(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    if re.search(r"^\s+99%", out, re.M) is None:
        raise SystemExit(f"bench: no latency distribution in wrk output:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(bad.group(1)) if bad else 0
    sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errs = non2xx + sock
    avg = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    avg_ms = float(avg.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[avg.group(2)]
    return {"rps": rps, "p50": lat(50), "p99": lat(99), "avg": avg_ms,
            "errors": errs, "total": total, "ok": total - non2xx, "socket_errors": sock,
            "ok_rps": rps * (total - non2xx) / max(total, 1)}


def start_nginx(tmp):
    port = free_port()
    tmp = os.path.join(tmp, "nginx")    # nginx takes its temp folder over: not the shared one
    os.makedirs(tmp)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon on; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {tmp};
  server {{ listen 127.0.0.1:{port};
    location / {{ client_max_body_size 2m; return 200 '{{"status":"ok"}}'; }} }} }}
""")
    subprocess.run(["nginx", "-c", conf], check=True)
    return port, conf


def start_producer(s, tmp, threads, **env):
    port = free_port()
    e = dict(os.environ, LJ_REDIS_PORT=str(s.redis_port), LJ_PG_DSN=s.dsn,
             LJ_HTTP_PORT=str(port), LJ_LOG_LEVEL="warn", LJ_THREADS=str(threads),
             LJ_STREAM_HIGH_WATERMARK="100000000", LJ_MAX_CONNECTIONS="16384")
    e.update({k: str(v) for k, v in env.items()})
    p = subprocess.Popen([os.path.join(BIN, "ljwx-producer")], env=e,
                         stdout=open(os.path.join(tmp, f"producer-{port}.log"), "w"),
                         stderr=subprocess.STDOUT)
    time.sleep(0.7)
    return p, port


def start_consumer(s, tmp, workers, **env):
    e = dict(os.environ, LJ_REDIS_PORT=str(s.redis_port), LJ_PG_DSN=s.dsn,
             LJ_STATUS_PORT=str(free_port()), LJ_LOG_LEVEL="warn")
    e.update({k: str(v) for k, v in env.items()})
    return subprocess.Popen([os.path.join(BIN, "ljwx-consumer"), "--workers", str(workers)],
                            env=e, stdout=open(os.path.join(tmp, "consumer.log"), "a"),
                            stderr=subprocess.STDOUT)


def stop(p):
    p.terminate()
    p.wait(60)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def references(s, seconds, nginx_port):
    ng1 = wrk(f"http://127.0.0.1:{nginx_port}/", "one_record.lua", seconds)
    ng100 = wrk(f"http://127.0.0.1:{nginx_port}/", "hundred_records.lua", seconds)
    row("nginx return 200, 1-record bodies", ng1["rps"], "req/s", note=f"p99 {ng1['p99']:.2f} ms")
    row("nginx return 200, 100-record bodies", ng100["rps"], "req/s",
        note=f"p99 {ng100['p99']:.2f} ms")
    for pipe in (1, 32):
        out = subprocess.run(["redis-benchmark", "-p", str(s.redis_port), "-c", "50", "-n",
                              "200000", "-P", str(pipe), "-q", "xadd", "bench_ref", "*", "f",
                              "x" * 300], capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"([\d.]+) requests per second", out).group(1))
        row(f"redis-benchmark XADD 300 B, c=50, P={pipe}", rps, "req/s")
    s.redis().delete("bench_ref")
    return ng1, ng100


def producer_workloads(s, tmp, seconds, ng1, ng100):
    best1 = 0
    s.redis().set("stream_traffic_ratio", "1")
    for threads in (1, 2):
        p, port = start_producer(s, tmp, threads)
        r = wrk(f"http://127.0.0.1:{port}/", "one_record.lua", seconds)
        stop(p)
        row(f"producer 1 record/req, {threads} loop(s)", r["rps"], "req/s", ng1["rps"],
            f"p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms errors {r['errors']}")
        best1 = max(best1, r["rps"] if not r["errors"] else 0)
        s.redis().flushall()
        s.redis().set("stream_traffic_ratio", "1")
    p, port = start_producer(s, tmp, 2)
    r = wrk(f"http://127.0.0.1:{port}/", "hundred_records.lua", seconds)
    stop(p)
    s.redis().flushall()
    row("producer 100 records/req (batch, ratio 1), 2 loops", r["rps"], "req/s", ng100["rps"],
        f"{r['rps'] * 100:,.0f} records/s avg {r['avg']:.1f} ms p99 {r['p99']:.1f} ms "
        f"errors {100.0 * r['errors'] / max(r['total'], 1):.3f}%")
    target("producer alone, 1 record/req >= 0.7x nginx return 200", best1 >= 0.7 * ng1["rps"],
           f"{best1:,.0f} req/s = {best1 / ng1['rps']:.2f}x {ng1['rps']:,.0f}")
    target("producer alone, 100 records/req >= 650,000 records/s",
           r["rps"] * 100 >= 650_000 and not r["errors"],
           f"{r['rps'] * 100:,.0f} records/s, errors {r['errors']}")


FLOW_OFF = dict(LJ_DEVICE_RATE="0", LJ_ADDR_RATE="0", LJ_MAX_INFLIGHT="0",
                LJ_BREAKER_FAILURES="0")
# Every limit on, none tripping: wrk's 100,000 serials come round about once
# in 2 s each (under 5/s), one client address under 1,000,000/s.
FLOW_ON = dict(LJ_DEVICE_RATE="5", LJ_DEVICE_BURST="20", LJ_ADDR_RATE="1000000",
               LJ_ADDR_BURST="1000000", LJ_MAX_INFLIGHT="4096", LJ_BREAKER_FAILURES="5")


def flow_control_overhead(s, tmp, seconds):
    """1 record/req with every flow-control check on vs off, alternated
    (off, on three times) so drift in the machine hits both alike; the best
    run of each, since noise on a shared 2-core machine only slows a run."""
    runs = {"off": [], "on": []}
    s.redis().set("stream_traffic_ratio", "1")
    for mode in ("off", "on") * 3:
        p, port = start_producer(s, tmp, 2, **(FLOW_ON if mode == "on" else FLOW_OFF))
        r = wrk(f"http://127.0.0.1:{port}/", "one_record.lua", seconds)
        stop(p)
        if r["errors"]:
            raise SystemExit(f"bench: {r['errors']} errors with flow control {mode}")
        runs[mode].append(r)
        s.redis().flushall()
        s.redis().set("stream_traffic_ratio", "1")
    off = max(r["rps"] for r in runs["off"])
    on = max(r["rps"] for r in runs["on"])
    row("producer 1 record/req, 2 loops, limits off", off, "req/s",
        note="best of 3, alternated with the next row")
    row("producer 1 record/req, 2 loops, limits on", on, "req/s", off,
        f"device 5/s + address + in-flight cap + breakers; p99 "
        f"{min(r['p99'] for r in runs['on']):.2f} ms vs {min(r['p99'] for r in runs['off']):.2f} ms")
    # Why the device limit ships off: the old stress test's shape under it.
    p, port = start_producer(s, tmp, 2, **FLOW_ON)
    r = wrk(f"http://127.0.0.1:{port}/", "hundred_records.lua", seconds)
    fc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stream_metrics",
                                           timeout=10).read())["flow_control"]
    stop(p)
    s.redis().flushall()
    sent = r["total"] * 100
    row("100 records/req with the device limit at 5/s", (sent - fc["rate_limited_records"])
        / seconds, "records/s", note=f"{100.0 * fc['rate_limited_records'] / max(sent, 1):.1f}% "
        f"of {sent:,} records rejected rate_limited (10,000 serials, each in "
        f"{sent / seconds / 10000:.0f} uploads/s)")


def connections_workload(s, tmp, seconds):
    holder = os.path.join(TOP, "tests", "hold_connections.py")
    p, port = start_producer(s, tmp, 2, LJ_KEEPALIVE_MS=600000)
    holders = [subprocess.Popen([sys.executable, holder, str(port), "5000"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    for h in holders:
        h.stdout.readline()
    time.sleep(1)
    r = wrk(f"http://127.0.0.1:{port}/", "one_record.lua", seconds)
    rss = rss_mb(p.pid)
    for h in holders:
        h.stdin.close()
        h.wait(30)
    stop(p)
    s.redis().flushall()
    row("10,000 idle keep-alive conns + 50 busy", r["rps"], "req/s",
        note=f"errors {r['errors']} p99 {r['p99']:.2f} ms producer RSS {rss:.1f} MiB")


class Backlog(threading.Thread):
    """Samples the health stream's backlog (entries not yet acknowledged:
    lag + pending of the consumers' group) every 0.5 s while the load runs;
    settle() stops sampling and waits (at most 'drain_s') for it to empty."""

    def __init__(self, s):
        super().__init__(daemon=True)
        self.r = s.redis()
        self.samples = []
        self.done = threading.Event()

    def now(self):
        try:
            g = [g for g in self.r.xinfo_groups("health_data_stream")
                 if g["name"] == "health_processors"]
        except Exception:   # noqa: BLE001 -- no stream or group yet
            return 0
        return (g[0]["lag"] or 0) + g[0]["pending"] if g else 0

    def run(self):
        t0 = time.monotonic()
        while not self.done.wait(0.5):
            self.samples.append((time.monotonic() - t0, self.now()))

    def settle(self, drain_s=15):
        self.done.set()
        self.join()
        deadline = time.monotonic() + drain_s
        while self.now() > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.now() == 0

    def growth(self):
        """Backlog entries/s over the second half of the run (least squares)."""
        pts = self.samples[len(self.samples) // 2:]
        if len(pts) < 2:
            return 0.0
        mt = sum(t for t, _ in pts) / len(pts)
        mb = sum(b for _, b in pts) / len(pts)
        var = sum((t - mt) ** 2 for t, _ in pts)
        return sum((t - mt) * (b - mb) for t, b in pts) / var if var else 0.0


def e2e_run(s, tmp, rate, seconds, serials, backlog=None, **consumer_env):
    """Producer (2 loops) and consumer (2 workers) under an open-loop load of
    'rate' uploads/s: (loadgen's result, rows stored, receive->row p99 ms).
    With a Backlog, it samples during the load and settles after it."""
    s.sql("TRUNCATE t_user_health_data")
    p, port = start_producer(s, tmp, 2)
    c = start_consumer(s, tmp, 2, **consumer_env)
    time.sleep(0.5)
    if backlog:
        backlog.start()
    t0 = time.monotonic()
    out = subprocess.run([os.path.join(BIN, "loadgen"), str(port), str(rate), str(seconds), "64",
                          serials], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if backlog:
        backlog.drained = backlog.settle()
    else:
        time.sleep(2)
    stop(p)
    stop(c)
    s.redis().flushall()
    if not out.stdout.strip():
        raise SystemExit(f"bench: loadgen failed: {out.stderr}")
    got = s.sql("SELECT count(*), percentile_cont(0.99) WITHIN GROUP (ORDER BY"
                " extract(epoch FROM create_time) * 1000 - split_part(stream_id, '-', 1)::bigint)"
                " FROM t_user_health_data WHERE device_sn LIKE %s", (serials + "-%",))[0]
    return dict(json.loads(out.stdout), wall_s=wall), got[0], got[1]


def end_to_end(s, tmp, seconds):
    res, stored, p99 = e2e_run(s, tmp, 5000, seconds, "E2E")
    row("end to end, open loop 5,000 uploads/s", res["ok"] / seconds, "uploads/s",
        note=f"HTTP p99 {res['p99_ms']:.2f} ms, receive->row p99 {p99:.1f} ms, "
             f"rows {stored}/{res['due']}, errors {res['errors']}")


def sustained(s, tmp, seconds, rates):
    """The whole pipeline on this machine (producer 2 loops, consumer 2
    workers, Redis, durable PostgreSQL, loadgen): open-loop 1-record uploads
    at each rate of 'rates' in turn for 'seconds', until one is not
    sustained: every upload answered 200 (p99 under 1 s: no queue of
    uploads grows), every one stored, the
    backlog bounded (peak under 2 s of load, growing under 1 % of the rate
    over the run's second half) and drained within 15 s after it."""
    best = None
    for rate in rates:
        b = Backlog(s)
        res, stored, p99 = e2e_run(s, tmp, rate, seconds, f"SU{rate}", backlog=b)
        peak = max((n for _, n in b.samples), default=0)
        growth = b.growth()
        why = [w for w, bad in (
            (f"{res['errors']} errors", res["errors"]),
            (f"{res['ok']:,}/{res['due']:,} answered 200", res["ok"] < res["due"]),
            (f"rows {stored:,}/{res['ok']:,}", stored != res["ok"]),
            (f"HTTP p99 {res['p99_ms']:,.0f} ms: uploads queue", res["p99_ms"] > 1000),
            (f"backlog peak {peak:,}", peak > 2 * rate),
            (f"backlog growing {growth:,.0f}/s", growth > 0.01 * rate),
            ("not drained 15 s after", not b.drained)) if bad]
        note = (f"HTTP p99 {res['p99_ms']:.2f} ms, receive->row p99 {p99 or 0:.1f} ms, backlog "
                f"peak {peak:,}, growth {growth:,.0f}/s, rows {stored:,}/{res['due']:,}")
        row(f"sustained 1-record uploads, offered {rate:,}/s", res["ok"] / res["wall_s"],
            "uploads/s",
            note=note + (f" -- NOT SUSTAINED: {', '.join(why)}" if why else " -- sustained"),
            durable=True, offered=rate, http_p99_ms=res["p99_ms"], receive_to_row_p99_ms=p99,
            backlog_peak=peak, backlog_growth=growth, sustained=not why)
        if why:
            break
        best = (rate, res["p99_ms"], p99)
    value = (f"{best[0]:,}/s sustained (HTTP p99 {best[1]:.2f} ms, receive->row p99 "
             f"{best[2]:.1f} ms)" if best else "none of the rates sustained")
    row("sustained: highest rate with bounded lag", best[0] if best else 0, "uploads/s",
        note=value, durable=True)
    target("whole pipeline, sustained 1-record uploads >= 30,000/s, bounded lag (durable)",
           best is not None and best[0] >= 30000, value)


BATCH_MODES = (("adaptive", dict(LJ_BATCH_ADAPTIVE="1")),
               ("fixed COUNT 200", dict(LJ_BATCH_ADAPTIVE="0")))


def batch_modes(s, tmp, seconds, records):
    """Adaptive batches next to a fixed COUNT (the default --batch-size):
    receive->row p99 at a low and the 5,000/s load, rows/s draining a backlog
    (saturation, 2 workers). Modes alternate within each load."""
    for rate in (500, 5000):
        for name, env in BATCH_MODES:
            res, stored, p99 = e2e_run(s, tmp, rate, seconds, "BM", **env)
            row(f"receive->row p99 at {rate:,}/s, {name}", p99, "ms",
                note=f"HTTP p99 {res['p99_ms']:.2f} ms, rows {stored}/{res['due']}, "
                     f"errors {res['errors']}")
    rows, copy_rate = copy_reference(s, tmp, records)
    for name, env in BATCH_MODES:
        rate = bench_consumer.drain(s, rows, 2, os.path.join(BIN, "ljwx-consumer"), tmp, **env)
        row(f"consumer drain, 2 workers, {name}", rate, "rows/s", copy_rate)
        s.redis().flushall()


_COPY_REF = {}


def durability(s):
    return "durable" if getattr(s, "durable", False) else "fsync=off"


def copy_reference(s, tmp, records):
    """The drain backlog and psql \\copy's rate for it, measured once a run
    for each durability."""
    key = (records, durability(s))
    if key not in _COPY_REF:
        rows = bench_consumer.make_records(records)
        _COPY_REF[key] = rows, bench_consumer.copy_reference(s, rows, tmp)
        row(f"psql \\copy of {records:,} rows, {key[1]}", _COPY_REF[key][1], "rows/s",
            durable=key[1] == "durable")
    return _COPY_REF[key]


def consumers(s, tmp, records, workers=(1, 2, 4)):
    """Drains of the backlog by 'workers' workers next to psql \\copy; with
    durable PostgreSQL also two psql \\copy at once (one stream is not the
    ceiling) and the issue's targets."""
    rows, copy_rate = copy_reference(s, tmp, records)
    mode = durability(s)
    got = {}
    if mode == "durable":
        rate = bench_consumer.copy_reference(s, rows, tmp, streams=2)
        row(f"2 psql \\copy at once, {records:,} rows, durable", rate, "rows/s", copy_rate,
            durable=True)
    for w in workers:
        got[w] = bench_consumer.drain(s, rows, w, os.path.join(BIN, "ljwx-consumer"), tmp)
        row(f"consumer drain, {w} worker(s), {mode}", got[w], "rows/s", copy_rate,
            durable=mode == "durable")
        s.redis().flushall()
    if mode == "durable":
        for w, want in ((1, 0.8), (2, 1.3)):
            target(f"consumer drain, {w} worker(s) >= {want}x psql \\copy (durable)",
                   got[w] >= want * copy_rate,
                   f"{got[w]:,.0f} rows/s = {got[w] / copy_rate:.2f}x {copy_rate:,.0f}")
    else:
        via_pgbouncer(s, tmp, rows, copy_rate)


def via_pgbouncer(s, tmp, rows, copy_rate, workers=4):
    """The same drain through PgBouncer 1.18 in pool_mode=transaction (its
    default pool of 20 server sessions), --pg-pooled: the pooler's cost."""
    bouncer = PgBouncer(tmp, s.pg_port)
    bouncer.start()
    try:
        rate = bench_consumer.drain(s, rows, workers, os.path.join(BIN, "ljwx-consumer"), tmp,
                                    LJ_PG_DSN=bouncer.dsn(), LJ_PG_POOLED=1)
        row(f"consumer drain, {workers} workers, via pgbouncer (transaction)", rate, "rows/s",
            copy_rate)
        s.redis().flushall()
    finally:
        bouncer.stop()


# -- Shards and a Redis Cluster (issue 18) -------------------------------------

def redis_layouts(s, tmp):
    """(name, env for our programs, a client for a key) of each layout:
    one Redis with 1 and 6 shards, a 3-master, 3-replica cluster with 1 and
    6 shards, and with 6 shards answering after WAIT 1. The cluster is
    started here and stopped after the last."""
    from redis_cluster import RedisCluster
    plain = dict(LJ_REDIS_PORT=str(s.redis_port))
    yield "one Redis, 1 shard", dict(plain, LJ_STREAM_SHARDS="1"), lambda k: s.redis()
    yield "one Redis, 6 shards", dict(plain, LJ_STREAM_SHARDS="6"), lambda k: s.redis()
    c = RedisCluster(tmp).start()
    try:
        def of(key):
            return c.node(c.master_of_slot(c.keyslot(key)))
        for shards in (1, 6):
            yield (f"cluster 3 masters, {shards} shard{'s' if shards > 1 else ''}",
                   dict(LJ_REDIS_CLUSTER=c.seeds(), LJ_STREAM_SHARDS=str(shards)), of)
        yield ("cluster 3 masters, 6 shards, WAIT 1", dict(
            LJ_REDIS_CLUSTER=c.seeds(), LJ_STREAM_SHARDS="6", LJ_REDIS_WAIT_REPLICAS="1"), of)
    finally:
        c.stop()


def shard_names(env):
    n = int(env["LJ_STREAM_SHARDS"])
    tagged = n > 1 or "LJ_REDIS_CLUSTER" in env
    return [f"health_data_stream:{{{k}}}" if tagged else "health_data_stream" for k in range(n)]


def drain_shards(s, tmp, rows, env, client):
    """The backlog spread over the layout's shards (entries in turn), drained
    by one consumer process with 1 worker a shard: rows/s."""
    names = shard_names(env)
    per = bench_consumer.PER_ENTRY
    for k, name in enumerate(names):
        chunks = [rows[i:i + per] for i in range(k * per, len(rows), per * len(names))]
        bench_consumer.load_backlog(client(name), name, [r for c in chunks for r in c])
    s.sql("TRUNCATE t_user_health_data")
    t0 = time.monotonic()
    c = start_consumer(s, tmp, 1, LJ_DEVICE_WORKERS="0", LJ_EVENT_WORKERS="0", **env)
    try:
        while not all(bench_consumer.drained(client(n), "", n) for n in names):
            if time.monotonic() - t0 > 600:
                raise SystemExit("bench: cluster drain did not finish within 600 s")
            time.sleep(0.05)
        took = time.monotonic() - t0
    finally:
        stop(c)
    got = s.sql("SELECT count(*) FROM t_user_health_data")[0][0]
    if got != len(rows):
        raise SystemExit(f"bench: cluster drain stored {got} rows of {len(rows)}")
    return len(rows) / took


def cluster_rows(s, tmp, seconds, ng1, records):
    """Producer req/s (1 record/req, 2 loops, wrk) and consumer rows/s for
    each layout; the one-Redis, 1-shard figures of this part are the
    reference of the others. fsync=off, as the other producer rows."""
    rows, _ = copy_reference(s, tmp, records)
    ref = {}
    for name, env, client in redis_layouts(s, os.path.join(tmp, "cluster")):
        client("stream_traffic_ratio").set("stream_traffic_ratio", "1")
        p, port = start_producer(s, tmp, 2, **env)
        r = wrk(f"http://127.0.0.1:{port}/", "one_record.lua", seconds)
        stop(p)
        ref.setdefault("rps", r["rps"])
        row(f"producer 1 record/req, {name}", r["rps"], "req/s", ref["rps"],
            f"p99 {r['p99']:.2f} ms errors {r['errors']}; {r['rps'] / ng1['rps']:.2f}x nginx")
        for n in shard_names(env):
            client(n).delete(n)
        if "LJ_REDIS_WAIT_REPLICAS" in env:
            continue    # the producer's cost only: consumers do not wait
        rate = drain_shards(s, tmp, rows, env, client)
        ref.setdefault("drain", rate)
        row(f"consumer drain, {name}", rate, "rows/s", ref["drain"], "1 worker a shard")
        for n in shard_names(env):
            client(n).delete(n)
    s.redis().flushall()


# -- Alert delivery (issue 17) ------------------------------------------------

def notifier_rate(s, tmp, nginx_port, alerts, workers, processes=1):
    """Deliveries/s of ljwx-notifier: 'alerts' NEW alerts of distinct devices
    (nothing suppressed) inserted at once, one webhook (nginx return 200 on
    loopback), from the first claim to the last NOTIFIED."""
    tag = f"B-notify-{workers}-{processes}-{time.time_ns()}"
    s.sql("UPDATE t_alert_info SET status = 'EXPIRED' WHERE status = 'NEW'")
    s.sql("INSERT INTO t_alert_info (device_sn, alert_type, alert_value, level, alert_time)"
          " SELECT %s || g, 'heart_rate', 150, 'major', now() FROM generate_series(1, %s) g",
          (tag + "-", alerts))
    e = dict(os.environ, LJ_PG_DSN=s.dsn, LJ_LOG_LEVEL="warn", LJ_NOTIFY_STATUS_PORT="-1",
             LJ_NOTIFY_WORKERS=str(workers), LJ_NOTIFY_POLL_MS="50",
             LJ_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{nginx_port}/hook")
    t0 = time.monotonic()
    procs = [subprocess.Popen([os.path.join(BIN, "ljwx-notifier")], env=e,
                              stdout=open(os.path.join(tmp, "notifier.log"), "a"),
                              stderr=subprocess.STDOUT) for _ in range(processes)]
    like = tag + "-%"
    while s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn LIKE %s AND status = 'NEW'",
                (like,))[0][0] > 0:
        if time.monotonic() - t0 > 300:
            break
        time.sleep(0.05)
    took = time.monotonic() - t0
    for p in procs:
        stop(p)
    done = s.sql("SELECT count(*) FROM t_alert_info WHERE device_sn LIKE %s"
                 " AND status = 'NOTIFIED'", (like,))[0][0]
    note = f"{done:,}/{alerts:,} NOTIFIED, webhook = nginx return 200"
    if done != alerts:
        note = "ROWS CHECK FAILED: " + note
    row(f"notifier, {processes} process(es) x {workers} worker(s)", done / took, "deliveries/s",
        note=note)


def notifier_workloads(s, tmp, nginx_port, alerts):
    for workers, processes in ((1, 1), (4, 1), (2, 2)):
        notifier_rate(s, tmp, nginx_port, alerts, workers, processes)


# -- Durable PostgreSQL: the legacy path next to the stream path -------------

def durable_pg(s):
    """Restarts PostgreSQL (same data, same port) as a user runs it: fsync,
    synchronous_commit and full_page_writes on, checked with SHOW, on a real
    file system (fsync on tmpfs flushes nothing)."""
    if not getattr(s, "durable", False):
        s.stop_pg()
        s.start_pg(durable=True)
    got = s.pg_settings()
    if got != s.DURABLE_SETTINGS:
        raise SystemExit(f"bench: durable PostgreSQL reports {got}")
    fs = subprocess.run(["stat", "-f", "-c", "%T", s.pg_dir], capture_output=True,
                        text=True).stdout.strip()
    if fs in ("tmpfs", "ramfs"):
        raise SystemExit(f"bench: {s.pg_dir} is on {fs}: a durable PostgreSQL needs a disk "
                         "(set TMPDIR)")
    print(f"-- durable PostgreSQL from here ({', '.join(f'{k}={v}' for k, v in got.items())},"
          f" data on {fs}); references in the same settings", flush=True)


def set_ratio(s, port, ratio):
    """Checks that the producer on 'port' routes at 'ratio' (set in Redis
    before it started)."""
    got = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stream_traffic_ratio",
                                            timeout=10).read())["current_ratio"]
    if float(got) != ratio:
        raise SystemExit(f"bench: producer routes at ratio {got}, not {ratio}")


def routed_stack(s, tmp, ratio):
    """An empty table and Redis, a producer (2 loops) routing at 'ratio'; at
    ratio 1 also a consumer (2 workers): the stream path stores its rows
    into the same durable PostgreSQL while the load runs, as the legacy path
    does. (producer, port, consumer or None)."""
    s.sql("TRUNCATE t_user_health_data")
    s.redis().flushall()
    s.redis().set("stream_traffic_ratio", str(ratio))
    p, port = start_producer(s, tmp, 2)
    set_ratio(s, port, ratio)
    return p, port, start_consumer(s, tmp, 2) if ratio else None


def stored(s, tag):
    """{upload_method: rows} of the rows whose serials start with 'tag'."""
    return dict(s.sql("SELECT upload_method, count(*) FROM t_user_health_data"
                      " WHERE device_sn LIKE %s GROUP BY 1", (tag + "-%",)))


def drained(s, tag, want, timeout=300):
    """Waits for the consumer to store at least 'want' rows of 'tag' and go
    quiet (no new row for 1 s); the rows stored."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        n = sum(stored(s, tag).values())
        if n >= want and n == last:
            return n
        last = n
        time.sleep(1)
    return sum(stored(s, tag).values())


def rows_check(s, tag, ratio, lo, hi):
    """The rows of 'tag' really in PostgreSQL, by the path the ratio chose:
    (rows, None) when lo <= rows <= hi, else (rows, what is wrong)."""
    by = stored(s, tag)
    n = sum(by.values())
    method = "stream_v2" if ratio else "optimized"
    if set(by) - {method}:
        return n, f"ROWS CHECK FAILED: stored by {sorted(by)}, not only {method}"
    if not lo <= n <= hi:
        return n, f"ROWS CHECK FAILED: {n:,} rows stored, {lo:,}..{hi:,} expected"
    return n, None


def routed_wrk(s, tmp, ratio, script, seconds, per_req, tag, args):
    """wrk at 'ratio'; its figures plus the rows check: every 200 stored
    (at most the requests in flight at wrk's end beyond)."""
    p, port, c = routed_stack(s, tmp, ratio)
    r = wrk(f"http://127.0.0.1:{port}/", script, seconds, args=args)
    stop(p)
    lo = r["ok"] * per_req
    hi = (r["total"] + 50 + r["socket_errors"]) * per_req
    if c:
        drained(s, tag, lo)
        stop(c)
    r["rows"], r["bad"] = rows_check(s, tag, ratio, lo, hi)
    return r


def routed_note(r, per_req):
    return (f"{r['ok_rps'] * per_req:,.0f} rows/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms "
            f"errors {r['errors']} rows {r['rows']:,}" + (f" {r['bad']}" if r["bad"] else ""))


def routed_extra(r, ratio, per_req):
    return dict(path="stream" if ratio else "legacy", durable=True, records_per_request=per_req,
                p50_ms=r["p50"], p99_ms=r["p99"], avg_ms=r["avg"], requests=r["total"],
                errors=r["errors"], rows_stored=r["rows"], rows_check=r["bad"] or "ok")


PATH_NAME = {0: "legacy, ratio 0", 1: "stream+consumer, ratio 1"}


def legacy_rows(s, tmp, seconds):
    """1 record/req to /upload_health_data and 100 records/req to
    /upload_health_data_batch, wrk 50 connections, at ratio 1 then ratio 0;
    the 100-record legacy rows/s against psql \\copy of the rows it stored."""
    one = {}
    copy_rate = None
    for ratio in (1, 0):
        tag = f"R1-{ratio}"
        r = one[ratio] = routed_wrk(s, tmp, ratio, "one_record.lua", seconds, 1, tag,
                                    ("/upload_health_data", tag))
        row(f"1 record/req, {PATH_NAME[ratio]}", r["ok_rps"], "req/s",
            one[1]["ok_rps"] if ratio == 0 else None, routed_note(r, 1),
            **routed_extra(r, ratio, 1))
    r = one[0]
    target("legacy 1 record/req >= 10,000 req/s, p99 < 50 ms",
           r["ok_rps"] >= 10000 and r["p99"] < 50 and not r["bad"] and not r["errors"],
           f"{r['ok_rps']:,.0f} req/s, p99 {r['p99']:.1f} ms, errors {r['errors']}, "
           f"rows {r['bad'] or 'ok'}")
    hundred = {}
    for ratio in (1, 0):
        tag = f"R100-{ratio}"
        r = hundred[ratio] = routed_wrk(s, tmp, ratio, "hundred_records.lua", seconds, 100, tag,
                                        (tag,))
        if ratio == 0:
            copy_rate = copy_of_stored(s, tmp, tag)
        row(f"100 records/req, {PATH_NAME[ratio]}", r["ok_rps"] * 100, "rows/s",
            copy_rate if ratio == 0 else None,
            f"{r['ok_rps']:,.0f} req/s " + routed_note(r, 100), **routed_extra(r, ratio, 100))
    r = hundred[0]
    target("legacy 100 records/req >= 0.6x psql \\copy rows/s",
           r["ok_rps"] * 100 >= 0.6 * copy_rate and not r["bad"] and not r["errors"],
           f"{r['ok_rps'] * 100:,.0f} rows/s = {r['ok_rps'] * 100 / copy_rate:.2f}x "
           f"{copy_rate:,.0f}, errors {r['errors']}, rows {r['bad'] or 'ok'}")


def copy_of_stored(s, tmp, tag):
    """psql \\copy's rows/s for the very rows the legacy run stored (every
    column but the defaults), into the emptied table, same server."""
    cols = ", ".join(c for (c,) in s.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = 't_user_health_data' AND column_name NOT IN ('id', 'create_time')"
        " ORDER BY ordinal_position"))
    path = os.path.join(tmp, "legacy-rows.copy")
    subprocess.run(["psql", "-X", "-q", s.dsn, "-c",
                    f"\\copy (SELECT {cols} FROM t_user_health_data WHERE device_sn LIKE"
                    f" '{tag}-%') TO '{path}'"], check=True)
    s.sql("TRUNCATE t_user_health_data")
    n = sum(1 for _ in open(path))
    t0 = time.monotonic()
    subprocess.run(["psql", "-X", "-q", s.dsn, "-c",
                    f"\\copy t_user_health_data ({cols}) FROM '{path}'"], check=True)
    rate = n / (time.monotonic() - t0)
    s.sql("TRUNCATE t_user_health_data")
    row(f"psql \\copy of those {n:,} rows", rate, "rows/s", durable=True)
    return rate


STRESS_ACCEPT = "avg < 100 ms, p99 < 500 ms, errors < 0.1 %"


def stress_shape(s, tmp, seconds, users):
    """The old service's acceptance stress test: 'users' users, each POSTs
    100 camelCase records to /upload_health_data_batch and thinks 0.2-1.0 s
    (build/loadgen think), on the legacy path then the stream path; every
    request is answered before loadgen ends, so the rows check is exact."""
    for ratio in (0, 1):
        tag = f"ST{ratio}"
        p, port, c = routed_stack(s, tmp, ratio)
        out = subprocess.run([os.path.join(BIN, "loadgen"), "think", str(port), str(users),
                              str(seconds), tag, "200", "1000", "100"], capture_output=True,
                             text=True, timeout=seconds + 120)
        stop(p)
        if not out.stdout.strip():
            raise SystemExit(f"bench: loadgen failed: {out.stderr}")
        res = json.loads(out.stdout)
        if c:
            drained(s, tag, res["accepted"])
            stop(c)
        rows, bad = rows_check(s, tag, ratio, res["accepted"], res["accepted"])
        err_pct = 100.0 * res["errors"] / max(res["requests"], 1)
        rps = res["ok"] / res["elapsed_s"]
        row(f"stress {users} users, {PATH_NAME[ratio]}", rps, "req/s",
            note=f"{res['accepted'] / res['elapsed_s']:,.0f} rows/s avg {res['avg_ms']:.1f} ms "
                 f"p99 {res['p99_ms']:.1f} ms errors {err_pct:.3f}% rows {rows:,}"
                 + (f" {bad}" if bad else ""),
            path="stream" if ratio else "legacy", durable=True, users=users, seconds=seconds,
            requests=res["requests"], errors=res["errors"], avg_ms=res["avg_ms"],
            p99_ms=res["p99_ms"], rows_per_s=res["accepted"] / res["elapsed_s"],
            rows_stored=rows, rows_check=bad or "ok")
        target(f"stress shape {PATH_NAME[ratio]}: {STRESS_ACCEPT}",
               res["avg_ms"] < 100 and res["p99_ms"] < 500 and err_pct < 0.1 and not bad,
               f"avg {res['avg_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, errors {err_pct:.3f}%, "
               f"rows {bad or 'ok'}")


def print_targets():
    if TARGETS:
        print("targets:")
    for t in TARGETS:
        print(f"  {'met   ' if t['met'] else 'MISSED'}  {t['target']}: {t['value']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs, smaller backlog")
    ap.add_argument("--json", default=os.path.join(TOP, "build", "bench.json"))
    ap.add_argument("--only", help="comma list of parts: refs,producer,flowctl,connections,e2e,"
                                   "cluster,"
                                   "consumers,batches,notify (PostgreSQL fsync=off), durable,"
                                   "sustained,legacy,stress (durable PostgreSQL, run last)")
    ap.add_argument("--sustained-rates", help="comma list of uploads/s, tried in turn "
                    "(default " + ",".join(map(str, SUSTAINED_RATES)) + ")")
    ap.add_argument("--stress-users", type=int, default=200)
    ap.add_argument("--stress-seconds", type=int, help="default 60, --quick 15")
    args = ap.parse_args()
    seconds = 5 if args.quick else 10
    stress_seconds = args.stress_seconds or (15 if args.quick else 60)
    tmp = tempfile.mkdtemp(prefix="ljwx-bench-")
    s = Servers(tmp)
    nginx_conf = None
    try:
        s.start_redis(maxmemory="4gb")
        s.start_pg()
        s.create_db()
        s.migrate()
        nginx_port, nginx_conf = start_nginx(tmp)
        print(f"{'workload':<48} {'value':>12} {'unit':<10} {'ratio':>7}  notes")
        parts = set((args.only or "refs,producer,flowctl,connections,e2e,cluster,consumers,batches,"
                                  "notify,durable,sustained,legacy,stress").split(","))
        ng1, ng100 = references(s, seconds, nginx_port)     # every ratio needs them
        if "producer" in parts:
            producer_workloads(s, tmp, seconds, ng1, ng100)
        if "flowctl" in parts:
            flow_control_overhead(s, tmp, seconds)
        if "connections" in parts:
            connections_workload(s, tmp, seconds)
        if "e2e" in parts:
            end_to_end(s, tmp, 10 if args.quick else 30)
        if "cluster" in parts:
            cluster_rows(s, tmp, seconds, ng1, 200_000)
        if "consumers" in parts:
            consumers(s, tmp, 200_000 if args.quick else 1_000_000)
        if "batches" in parts:
            batch_modes(s, tmp, 10 if args.quick else 20, 200_000 if args.quick else 1_000_000)
        if "notify" in parts:
            notifier_workloads(s, tmp, nginx_port, 2000 if args.quick else 10000)
        if parts & {"durable", "sustained", "legacy", "stress"}:
            durable_pg(s)
        if "durable" in parts:
            consumers(s, tmp, 200_000 if args.quick else 1_000_000, workers=(1, 2))
        if "sustained" in parts:
            sustained(s, tmp, 15 if args.quick else 60,
                      [int(r) for r in args.sustained_rates.split(",")] if args.sustained_rates
                      else SUSTAINED_RATES)
        if "legacy" in parts:
            legacy_rows(s, tmp, seconds)
        if "stress" in parts:
            stress_shape(s, tmp, stress_seconds, args.stress_users)
        print_targets()
    finally:
        if nginx_conf:
            subprocess.run(["nginx", "-c", nginx_conf, "-s", "stop"], check=False)
        s.stop_redis()
        s.stop_pg()
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": ROWS,
                   "targets": TARGETS},
                  f, indent=1)
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()

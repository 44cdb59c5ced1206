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
open loop), and adaptive batches next to a fixed COUNT (latency at low and
5,000/s load, rows/s at saturation). Prints a table and writes JSON.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, HERE)
from conftest import Servers, free_port  # noqa: E402
import bench_consumer  # noqa: E402

BIN = os.path.join(TOP, "build")
ROWS = []


def row(name, value, unit, ref=None, note=""):
    ratio = value / ref if ref else None
    ROWS.append({"workload": name, "value": value, "unit": unit,
                 "ratio": round(ratio, 3) if ratio else None, "note": note})
    print(f"{name:<48} {value:>12,.1f} {unit:<10} "
          f"{('%.2fx' % ratio) if ratio else '':>7}  {note}", flush=True)


def wrk(url, script, seconds, conns=50):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
                          os.path.join(HERE, script), url], capture_output=True, text=True,
                         check=True).stdout
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
    errs = int(bad.group(1)) if bad else 0
    errs += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    avg = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    avg_ms = float(avg.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[avg.group(2)]
    return {"rps": rps, "p50": lat(50), "p99": lat(99), "avg": avg_ms,
            "errors": errs, "total": total}


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
    s.redis().set("stream_traffic_ratio", "1")
    for threads in (1, 2):
        p, port = start_producer(s, tmp, threads)
        r = wrk(f"http://127.0.0.1:{port}/", "one_record.lua", seconds)
        stop(p)
        row(f"producer 1 record/req, {threads} loop(s)", r["rps"], "req/s", ng1["rps"],
            f"p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms errors {r['errors']}")
        s.redis().flushall()
        s.redis().set("stream_traffic_ratio", "1")
    p, port = start_producer(s, tmp, 2)
    r = wrk(f"http://127.0.0.1:{port}/", "hundred_records.lua", seconds)
    stop(p)
    s.redis().flushall()
    row("producer 100 records/req (batch, ratio 1), 2 loops", r["rps"], "req/s", ng100["rps"],
        f"{r['rps'] * 100:,.0f} records/s avg {r['avg']:.1f} ms p99 {r['p99']:.1f} ms "
        f"errors {100.0 * r['errors'] / max(r['total'], 1):.3f}%")


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


def e2e_run(s, tmp, rate, seconds, serials, **consumer_env):
    """Producer (2 loops) and consumer (2 workers) under an open-loop load of
    'rate' uploads/s: (loadgen's result, rows stored, receive->row p99 ms)."""
    s.sql("TRUNCATE t_user_health_data")
    p, port = start_producer(s, tmp, 2)
    c = start_consumer(s, tmp, 2, **consumer_env)
    time.sleep(0.5)
    out = subprocess.run([os.path.join(BIN, "loadgen"), str(port), str(rate), str(seconds), "64",
                          serials], capture_output=True, text=True)
    time.sleep(2)
    stop(p)
    stop(c)
    s.redis().flushall()
    if not out.stdout.strip():
        raise SystemExit(f"bench: loadgen failed: {out.stderr}")
    got = s.sql("SELECT count(*), percentile_cont(0.99) WITHIN GROUP (ORDER BY"
                " extract(epoch FROM create_time) * 1000 - split_part(stream_id, '-', 1)::bigint)"
                " FROM t_user_health_data WHERE device_sn LIKE %s", (serials + "-%",))[0]
    return json.loads(out.stdout), got[0], got[1]


def end_to_end(s, tmp, seconds):
    res, stored, p99 = e2e_run(s, tmp, 5000, seconds, "E2E")
    row("end to end, open loop 5,000 uploads/s", res["ok"] / seconds, "uploads/s",
        note=f"HTTP p99 {res['p99_ms']:.2f} ms, receive->row p99 {p99:.1f} ms, "
             f"rows {stored}/{res['due']}, errors {res['errors']}")


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


def copy_reference(s, tmp, records):
    """The drain backlog and psql \\copy's rate for it, measured once a run."""
    if records not in _COPY_REF:
        rows = bench_consumer.make_records(records)
        _COPY_REF[records] = rows, bench_consumer.copy_reference(s, rows, tmp)
        row(f"psql \\copy of {records:,} rows", _COPY_REF[records][1], "rows/s")
    return _COPY_REF[records]


def consumers(s, tmp, records):
    rows, copy_rate = copy_reference(s, tmp, records)
    for w in (1, 2, 4):
        rate = bench_consumer.drain(s, rows, w, os.path.join(BIN, "ljwx-consumer"), tmp)
        row(f"consumer drain, {w} worker(s)", rate, "rows/s", copy_rate)
        s.redis().flushall()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs, smaller backlog")
    ap.add_argument("--json", default=os.path.join(TOP, "build", "bench.json"))
    ap.add_argument("--only", help="comma list of parts: refs,producer,flowctl,connections,e2e,"
                                   "consumers,batches")
    args = ap.parse_args()
    seconds = 5 if args.quick else 10
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
        parts = set((args.only or "refs,producer,flowctl,connections,e2e,consumers,batches")
                    .split(","))
        ng1, ng100 = references(s, seconds, nginx_port)     # every ratio needs them
        if "producer" in parts:
            producer_workloads(s, tmp, seconds, ng1, ng100)
        if "flowctl" in parts:
            flow_control_overhead(s, tmp, seconds)
        if "connections" in parts:
            connections_workload(s, tmp, seconds)
        if "e2e" in parts:
            end_to_end(s, tmp, 10 if args.quick else 30)
        if "consumers" in parts:
            consumers(s, tmp, 200_000 if args.quick else 1_000_000)
        if "batches" in parts:
            batch_modes(s, tmp, 10 if args.quick else 20, 200_000 if args.quick else 1_000_000)
    finally:
        if nginx_conf:
            subprocess.run(["nginx", "-c", nginx_conf, "-s", "stop"], check=False)
        s.stop_redis()
        s.stop_pg()
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": ROWS},
                  f, indent=1)
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()

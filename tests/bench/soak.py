"""`make soak`: a long steady run with faults, to see leaks and drift (not a
test, not in CI).

    /usr/bin/python3 tests/bench/soak.py [--minutes 30] [--rate 2000]
        [--fault-every 3] [--out build/soak] [--durable]

One Redis, one PostgreSQL (fsync off unless --durable), a producer (2 loops)
routing at ratio 0.5 and a consumer (2 workers): open-loop 1-record uploads
(tests/bench/loadgen.c) to /upload_health_data from one fleet of 2,000
devices, so half of them take the stream path and half the legacy path;
each minute's timestamps follow the last's.
Every --fault-every minutes a fault, in turn: the consumer killed with
SIGKILL and started again, PostgreSQL restarted (fast stop, start).

Each minute it samples the producer's and the consumer's RSS and open
descriptors, the health group's lag and pending, and the minute's uploads
(ok, errors, p99). At the end it waits for the backlog to drain and checks
that every upload answered 200 is stored once. Writes soak.md (the table),
soak.json and soak.png (the curves, with python3-matplotlib) to --out, and
prints whether the producer's RSS and descriptors stayed flat (the last
third of the run against the first third after the first minute).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, HERE)
from conftest import Servers  # noqa: E402
from bench import rss_mb, start_consumer, start_producer, stop  # noqa: E402

BIN = os.path.join(TOP, "build")
GROWTH_LIMIT = 1.10         # "flat": the last third within 10% of the first
TS_BASE = 1700000000000     # reading times: minute m from TS_BASE + m * TS_PER_MINUTE ms
TS_PER_MINUTE = 100_000_000


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def group_state(s):
    """(lag, pending) of the health group, or (-1, -1) while Redis cannot say."""
    try:
        for g in s.redis().xinfo_groups("health_data_stream"):
            if g["name"] == "health_processors":
                return int(g.get("lag") or 0), int(g["pending"])
    except Exception:
        pass
    return -1, -1


def stored(s, like):
    return s.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE %s",
                 (like,))[0][0]


class Soak:
    def __init__(self, s, tmp, args):
        self.s, self.tmp, self.args = s, tmp, args
        self.samples = []
        self.faults = []
        self.ok = 0
        s.redis().set("stream_traffic_ratio", "0.5")
        self.producer, self.port = start_producer(s, tmp, 2)
        self.consumer = start_consumer(s, tmp, 2)

    def fault(self, minute):
        if (minute // self.args.fault_every) % 2 == 1:
            self.consumer.send_signal(signal.SIGKILL)
            self.consumer.wait(30)
            self.consumer = start_consumer(self.s, self.tmp, 2)
            what = "consumer SIGKILL + start"
        else:
            self.s.stop_pg()
            self.s.start_pg(durable=self.args.durable)
            what = "PostgreSQL restart"
        self.faults.append({"minute": minute, "fault": what})
        print(f"   minute {minute}: {what}", flush=True)

    def minute(self, m):
        """One minute of load; the fault (if due) 20 s into it."""
        load = subprocess.Popen(
            [os.path.join(BIN, "loadgen"), str(self.port), str(self.args.rate), "60", "64",
             "SOAK", "/upload_health_data", str(TS_BASE + m * TS_PER_MINUTE)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if m > 0 and m % self.args.fault_every == 0:
            time.sleep(20)
            self.fault(m)
        out, err = load.communicate(timeout=180)
        if not out.strip():
            raise SystemExit(f"soak: loadgen failed: {err}")
        res = json.loads(out)
        self.ok += res["ok"]
        lag, pending = group_state(self.s)
        sample = {"minute": m + 1, "ok": res["ok"], "errors": res["errors"],
                  "p99_ms": res["p99_ms"], "lag": lag, "pending": pending,
                  "producer_rss_mb": round(rss_mb(self.producer.pid), 1),
                  "producer_fds": fds(self.producer.pid),
                  "consumer_rss_mb": round(rss_mb(self.consumer.pid), 1),
                  "consumer_fds": fds(self.consumer.pid)}
        self.samples.append(sample)
        print("   " + " ".join(f"{k}={v}" for k, v in sample.items()), flush=True)

    def drain(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lag, pending = group_state(self.s)
            if lag == 0 and pending == 0:
                return True
            time.sleep(1)
        return False

    def finish(self):
        drained = self.drain()
        rows = stored(self.s, "SOAK%")
        dups = self.s.sql("SELECT count(*) FROM (SELECT device_sn, ts FROM t_user_health_data"
                          " WHERE device_sn LIKE 'SOAK%' GROUP BY 1, 2"
                          " HAVING count(*) > 1) d")[0][0]
        stop(self.producer)
        stop(self.consumer)
        return {"drained": drained, "ok_uploads": self.ok, "rows": rows, "duplicates": dups,
                "every_200_stored": rows >= self.ok and dups == 0}


def flat(samples, key):
    """(first third mean, last third mean, flat?) after the first minute."""
    xs = [x[key] for x in samples[1:]]
    if len(xs) < 3:
        return None, None, None
    k = len(xs) // 3
    a = sum(xs[:k]) / k
    b = sum(xs[-k:]) / k
    return round(a, 1), round(b, 1), b <= a * GROWTH_LIMIT + 1


def write_table(path, samples, faults, verdict, end):
    cols = list(samples[0])
    with open(path, "w") as f:
        f.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for x in samples:
            f.write("| " + " | ".join(str(x[c]) for c in cols) + " |\n")
        f.write("\nFaults: " + "; ".join(f"minute {x['minute']}: {x['fault']}" for x in faults)
                + "\n\n")
        for k, (a, b, ok) in verdict.items():
            f.write(f"- {k}: {a} -> {b} ({'flat' if ok else 'GROWING'})\n")
        f.write(f"- end: {json.dumps(end)}\n")


def plot(path, samples, faults):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: python3-matplotlib missing, no plot", flush=True)
        return
    t = [x["minute"] for x in samples]
    fig, ax = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for k in ("producer_rss_mb", "consumer_rss_mb"):
        ax[0].plot(t, [x[k] for x in samples], label=k)
    for k in ("producer_fds", "consumer_fds"):
        ax[1].plot(t, [x[k] for x in samples], label=k)
    for k in ("lag", "pending"):
        ax[2].plot(t, [x[k] for x in samples], label=k)
    for a in ax:
        for fl in faults:
            a.axvline(fl["minute"] + 0.33, color="grey", linestyle=":")
        a.legend(loc="upper left")
    ax[2].set_xlabel("minute (dotted: a fault)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=int(os.environ.get("SOAK_MINUTES", 30)))
    ap.add_argument("--rate", type=int, default=2000, help="uploads/s")
    ap.add_argument("--fault-every", type=int, default=3, help="minutes between faults")
    ap.add_argument("--durable", action="store_true", help="PostgreSQL with fsync on")
    ap.add_argument("--out", default=os.path.join(TOP, "build", "soak"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ljwx-soak-")
    s = Servers(tmp)
    try:
        s.start_redis(maxmemory="2gb")
        s.start_pg(durable=args.durable)
        s.create_db()
        s.migrate()
        soak = Soak(s, tmp, args)
        print(f"soak: {args.minutes} min at {args.rate} uploads/s, ratio 0.5, a fault every "
              f"{args.fault_every} min", flush=True)
        for m in range(args.minutes):
            soak.minute(m)
        end = soak.finish()
    finally:
        s.stop_redis()
        s.stop_pg()
        shutil.rmtree(tmp, ignore_errors=True)
    verdict = {k: flat(soak.samples, k) for k in ("producer_rss_mb", "producer_fds")}
    os.makedirs(args.out, exist_ok=True)
    write_table(os.path.join(args.out, "soak.md"), soak.samples, soak.faults, verdict, end)
    with open(os.path.join(args.out, "soak.json"), "w") as f:
        json.dump({"args": vars(args), "samples": soak.samples, "faults": soak.faults,
                   "verdict": verdict, "end": end}, f, indent=1)
    plot(os.path.join(args.out, "soak.png"), soak.samples, soak.faults)
    for k, (a, b, ok) in verdict.items():
        print(f"{k}: {a} -> {b}: {'flat' if ok else 'GROWING'}")
    print(f"end: {end}\nresults: {args.out}/soak.md, soak.json, soak.png")
    return 0 if end["every_200_stored"] and all(v[2] for v in verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

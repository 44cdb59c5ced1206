"""Consumers on sharded streams (LJ_STREAM_SHARDS), on one Redis and on a
real 3-master, 3-replica Redis Cluster (LJ_REDIS_CLUSTER): every shard is
read, every entry stored once, a killed process's entries taken over, a
process added under load given its share of every shard. The entries are
XADDed here as the producer writes them (one per upload, on the device's
shard: test_producer_cluster.py), so each test sets every shard's load."""
import json
import re
import signal
import threading
import time
import uuid

import redis
import requests

from conftest import free_port, wait_for

BASE_MS = 1_760_000_000_000


def entry(records):
    return {"timestamp": str(int(time.time() * 1000)), "uuid": str(uuid.uuid4()),
            "device_sn": records[0]["device_sn"], "message_type": "health_data",
            "api_version": "v2", "batch_id": "",
            "payload": json.dumps([dict(r, source_method="api") for r in records])}


def shard(stack, k, kind="health_data_stream"):
    return f"{stack.prefix}{kind}:{{{k}}}"


def load(client_of, stack, shards, per_shard, sn):
    """'per_shard' one-record entries on each shard; the keys (sn, ts)."""
    keys = []
    for k in range(shards):
        c = client_of(shard(stack, k))
        for i in range(per_shard):
            ts = BASE_MS + k * 100_000 + i
            c.xadd(shard(stack, k), entry([{"device_sn": sn, "ts": ts, "heart_rate": 70}]))
            keys.append(ts)
    return keys


def stored(stack, sn):
    return [r[0] for r in stack.s.sql(
        "SELECT (extract(epoch FROM ts) * 1000)::bigint FROM t_user_health_data"
        " WHERE device_sn = %s ORDER BY ts", (sn,))]


def group_of(client_of, stack, k):
    """(pending, lag, entries-read) of shard k's health group, or None."""
    try:
        for g in client_of(shard(stack, k)).xinfo_groups(shard(stack, k)):
            if g["name"] == stack.prefix + "health_processors":
                return g["pending"], g["lag"], g["entries-read"]
    except redis.exceptions.ResponseError:
        pass
    return None


def all_settled(client_of, stack, shards):
    return all((group_of(client_of, stack, k) or (1, 1, 0))[:2] == (0, 0)
               for k in range(shards))


def test_every_shard_on_one_redis_is_read_and_stored_once(stack):
    sn = f"SH-{uuid.uuid4().hex[:8]}"
    r = stack.s.redis()
    keys = load(lambda _: r, stack, 3, 40, sn)
    status = free_port()
    stack.consumer("--workers", "1", LJ_STREAM_SHARDS=3, LJ_STATUS_PORT=status,
                   LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0, LJ_BATCH_SIZE=10)
    wait_for(lambda: stored(stack, sn) == sorted(keys) and all_settled(lambda _: r, stack, 3),
             timeout=30, what="every shard drained")
    for k in range(3):
        assert group_of(lambda _: r, stack, k)[2] == 40     # each read by its group
    # The plain stream is not read (nor created) with shards on.
    assert not r.exists(stack.prefix + "health_data_stream")
    # Each shard has its own worker and metrics.
    text = requests.get(f"http://127.0.0.1:{status}/metrics", timeout=5).text
    for k in range(3):      # labelled by the plain name and the shard (as the producer's)
        assert f'stream="{stack.prefix}health_data_stream",shard="{k}"' in text


def cluster_client(cluster):
    nodes = {}

    def client_of(key):
        m = cluster.master_of_slot(cluster.keyslot(key))
        if m not in nodes:
            nodes[m] = cluster.node(m)
        return nodes[m]
    return client_of


def test_six_shards_over_three_masters_survive_a_killed_consumer(stack, cluster):
    sn = f"SC-{uuid.uuid4().hex[:8]}"
    client_of = cluster_client(cluster)
    homes = {cluster.master_of_slot(cluster.keyslot(shard(stack, k))) for k in range(6)}
    assert len(homes) == 3              # the shards spread over every master
    keys = load(client_of, stack, 6, 60, sn)
    env = dict(LJ_REDIS_CLUSTER=cluster.seeds(), LJ_STREAM_SHARDS=6, LJ_DEVICE_WORKERS=0,
               LJ_EVENT_WORKERS=0, LJ_BATCH_SIZE=5, LJ_CLAIM_IDLE_MS=2000,
               LJ_UPKEEP_INTERVAL_MS=300)
    first = stack.consumer("--workers", "1", LJ_STATUS_PORT=free_port(), **env)
    wait_for(lambda: len(stored(stack, sn)) >= 30, timeout=30, what="some rows stored")
    first.p.send_signal(signal.SIGKILL)
    first.p.wait()
    stack.procs.remove(first)           # killed on purpose
    second = stack.consumer("--workers", "1", LJ_STATUS_PORT=free_port(), **env)
    wait_for(lambda: stored(stack, sn) == sorted(keys) and all_settled(client_of, stack, 6),
             timeout=60, what="every shard drained after the kill")
    assert second.alive()
    for k in range(6):
        assert client_of(shard(stack, k)).xlen(shard(stack, k) + ":dead") == 0


def test_one_shard_on_a_cluster_uses_the_tagged_name(stack, cluster):
    """The settle scripts name a stream and its side keys: on a cluster they
    must share a slot, so even one shard carries the hash tag."""
    sn = f"S1-{uuid.uuid4().hex[:8]}"
    client_of = cluster_client(cluster)
    keys = load(client_of, stack, 1, 20, sn)
    stack.consumer("--workers", "1", LJ_REDIS_CLUSTER=cluster.seeds(), LJ_DEVICE_WORKERS=0,
                   LJ_EVENT_WORKERS=0, LJ_STATUS_PORT=free_port())
    wait_for(lambda: stored(stack, sn) == sorted(keys) and all_settled(client_of, stack, 1),
             timeout=30, what="the tagged stream drained")
    counts = client_of(shard(stack, 0)).hgetall(shard(stack, 0) + ":counts")
    assert int(counts.get("stored", 0)) == 20


def acked_per_shard(status_port):
    """{shard: entries acknowledged} of one consumer process (its /metrics)."""
    text = requests.get(f"http://127.0.0.1:{status_port}/metrics", timeout=5).text
    acked = {}
    for m in re.finditer(r'^ljwx_consumer_entries_acked_total\{[^}]*shard="(\d+)"[^}]*\} (\d+)$',
                         text, re.M):
        acked[int(m[1])] = acked.get(int(m[1]), 0) + int(m[2])
    return acked


def consumers_of(client_of, stack, k):
    """{name: pending} of shard k's health group (XINFO CONSUMERS)."""
    try:
        return {c["name"]: c["pending"] for c in client_of(shard(stack, k)).xinfo_consumers(
            shard(stack, k), stack.prefix + "health_processors")}
    except redis.exceptions.ResponseError:
        return {}


class Feeder:
    """XADDs one entry to every shard in turn, as load() does, until
    stopped, on its own links; 'keys' the ts of every entry added."""

    def __init__(self, cluster, stack, shards, sn):
        self.keys = []
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(cluster, stack, shards, sn),
                                       daemon=True)

    def run(self, cluster, stack, shards, sn):
        client_of = cluster_client(cluster)
        i = 0
        try:
            while not self.stop.is_set():
                for k in range(shards):
                    ts = BASE_MS + k * 100_000 + i
                    client_of(shard(stack, k)).xadd(
                        shard(stack, k), entry([{"device_sn": sn, "ts": ts, "heart_rate": 70}]))
                    self.keys.append(ts)
                i += 1
                time.sleep(0.02)
        except redis.exceptions.RedisError as e:   # surfaced by __exit__
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive() and self.error is None, self.error


def kill_holding_entries(proc, client_of, stack, shards):
    """kill -9 of 'proc' while it holds delivered, unacknowledged entries:
    stopped (SIGSTOP) until its consumers' pending is seen > 0, then killed.
    Returns that pending count."""
    mark = f":{proc.p.pid}:"
    for _ in range(50):
        proc.p.send_signal(signal.SIGSTOP)
        names = [consumers_of(client_of, stack, k) for k in range(shards)]
        held = sum(p for c in names for n, p in c.items() if mark in n)
        assert sum(1 for c in names for n in c if mark in n) == shards
        if held:
            proc.p.send_signal(signal.SIGKILL)
            proc.p.wait()
            stack.procs.remove(proc)        # killed on purpose
            return held
        proc.p.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the process never held an entry when stopped")


def test_a_consumer_added_under_load_takes_its_share_of_every_shard_then_one_killed(stack,
                                                                                    cluster):
    """A consumer process added under load takes its share of every shard,
    then one killed: nothing stranded."""
    sn = f"SJ-{uuid.uuid4().hex[:8]}"
    client_of = cluster_client(cluster)
    env = dict(LJ_REDIS_CLUSTER=cluster.seeds(), LJ_STREAM_SHARDS=6, LJ_DEVICE_WORKERS=0,
               LJ_EVENT_WORKERS=0, LJ_BATCH_SIZE=5, LJ_CLAIM_IDLE_MS=2000,
               LJ_UPKEEP_INTERVAL_MS=300)
    a = stack.consumer("--workers", "1", LJ_STATUS_PORT=free_port(), **env)
    with Feeder(cluster, stack, 6, sn) as feed:
        wait_for(lambda: len(stored(stack, sn)) >= 60, timeout=20, what="A storing under load")
        b_port = free_port()
        b = stack.consumer("--workers", "1", LJ_STATUS_PORT=b_port, **env)
        mark = f":{b.p.pid}:"

        def b_everywhere():
            try:
                acked = acked_per_shard(b_port)
            except requests.RequestException:
                return False
            return all(any(mark in name for name in consumers_of(client_of, stack, k)) and
                       acked.get(k, 0) > 0 for k in range(6))
        # B's consumer in every shard's group (XINFO CONSUMERS; Redis 7.0 has no
        # delivered count there, so B's own per-shard acknowledgements say it got some).
        wait_for(b_everywhere, timeout=15, what="B's consumer with entries in every shard")
        stranded = kill_holding_entries(a, client_of, stack, 6)
        time.sleep(1)                   # the load goes on while A's entries wait
    keys = feed.keys
    wait_for(lambda: len(stored(stack, sn)) >= len(keys) and all_settled(client_of, stack, 6),
             timeout=25, what="every shard drained after the kill")
    dupes = stack.s.sql("SELECT ts, count(*) FROM t_user_health_data WHERE device_sn = %s"
                        " GROUP BY device_sn, ts HAVING count(*) <> 1", (sn,))
    assert dupes == []
    assert stored(stack, sn) == sorted(keys)
    for k in range(6):
        key = shard(stack, k)
        assert group_of(client_of, stack, k)[:2] == (0, 0)
        assert client_of(key).xlen(key + ":dead") == 0
        # A's entries were taken over: none left in its name.
        assert all(p == 0 for p in consumers_of(client_of, stack, k).values())
    assert b.alive()
    text = requests.get(f"http://127.0.0.1:{b_port}/metrics", timeout=5).text
    claimed = sum(int(v) for v in re.findall(r"^ljwx_consumer_claimed_total\{[^}]*\} (\d+)$",
                                              text, re.M))
    assert claimed >= stranded > 0, (claimed, stranded)

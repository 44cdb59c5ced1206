"""The producer on sharded streams (LJ_STREAM_SHARDS) over a real
3-master, 3-replica Redis Cluster (LJ_REDIS_CLUSTER): uploads of many
devices spread over every master and are stored once by a consumer; the
ratio key is found in the cluster; a master killed with kill -9 under load
gives 200 or 503 (never a 200 that is lost) and the producer routes again
by itself within seconds."""
import threading
import time
import uuid

import pytest
import requests

from conftest import free_port, reading, wait_for

BASE_S = 1_760_000_000
SHARDS = 6


def shard(stack, k, kind="health_data_stream"):
    return f"{stack.prefix}{kind}:{{{k}}}"


def client_of(cluster):
    def of(key):
        return cluster.node(cluster.master_of_slot(cluster.keyslot(key)))
    return of


def cluster_env(cluster, **extra):
    env = dict(LJ_REDIS_CLUSTER=cluster.seeds(), LJ_STREAM_SHARDS=SHARDS)
    env.update(extra)
    return env


def consumer_env(cluster):
    return cluster_env(cluster, LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0, LJ_BATCH_SIZE=20,
                       LJ_CLAIM_IDLE_MS=2000, LJ_UPKEEP_INTERVAL_MS=300,
                       LJ_STATUS_PORT=free_port())


def upload(session, stack, sn, ts):
    return session.post(stack.url + "/upload_health_data_v2",
                        json={"data": reading(sn, ts)}, timeout=10)


def send(stack, tag, devices):
    """One upload of each of 'devices' devices; {sn: stream_id}."""
    s = requests.Session()
    ids = {}
    for d in range(devices):
        resp = upload(s, stack, f"{tag}{d:03d}", BASE_S)
        assert resp.status_code == 200, resp.text
        ids[f"{tag}{d:03d}"] = resp.json()["stream_id"]
    return ids


def wait_routing(stack, sn):
    """Until the producer has learnt the slot map (an upload is stored)."""
    s = requests.Session()
    wait_for(lambda: upload(s, stack, sn, BASE_S).status_code == 200, timeout=20,
             what="the producer to route to the cluster")


def stored(stack, prefix):
    """(device_sn, epoch s) -> rows, of the devices whose serial starts so."""
    rows = stack.s.sql(
        "SELECT device_sn, extract(epoch FROM ts)::bigint, count(*) FROM t_user_health_data"
        " WHERE device_sn LIKE %s GROUP BY 1, 2", (prefix + "%",))
    return {(sn, int(ts)): int(n) for sn, ts, n in rows}


def shard_lengths(cluster, stack):
    of = client_of(cluster)
    return [of(shard(stack, k)).xlen(shard(stack, k)) for k in range(SHARDS)]


def test_six_shards_spread_over_every_master_and_are_stored_once(stack, cluster):
    tag = f"PC{uuid.uuid4().hex[:6]}-"
    stack.producer(**cluster_env(cluster))
    wait_routing(stack, tag + "warm")
    s = requests.Session()
    sent = {(tag + "warm", BASE_S)}
    for d in range(60):
        for i in range(3):
            resp = upload(s, stack, f"{tag}{d:03d}", BASE_S + i)
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "accepted"
            sent.add((f"{tag}{d:03d}", BASE_S + i))
    lengths = shard_lengths(cluster, stack)
    assert sum(lengths) == len(sent)
    assert all(n > 0 for n in lengths), lengths       # every shard used
    homes = {cluster.master_of_slot(cluster.keyslot(shard(stack, k)))
             for k in range(SHARDS) if lengths[k]}
    assert len(homes) == 3                              # and every master
    # A device stays on one shard (its entries keep their order).
    of = client_of(cluster)
    seen = {}
    for k in range(SHARDS):
        for _, f in of(shard(stack, k)).xrange(shard(stack, k)):
            assert seen.setdefault(f["device_sn"], k) == k
    # The plain names are not written on a cluster.
    assert of(stack.prefix + "health_data_stream").exists(
        stack.prefix + "health_data_stream") == 0
    stack.consumer("--workers", "1", **consumer_env(cluster))
    wait_for(lambda: set(stored(stack, tag)) == sent, timeout=60,
             what="every upload stored")
    assert set(stored(stack, tag).values()) == {1}

    # The producer's ledger sums the shards, each read on its own master.
    def conserved():
        c = stack.get("/api/stream_metrics").json()["conservation"][
            stack.prefix + "health_data_stream"]
        return c is not None and c["accepted"] == len(sent) and \
            c["stored"] == len(sent) and c["balanced"]
    wait_for(conserved, timeout=20, what="the ledger summed over the shards")


def test_the_ratio_key_is_read_from_the_cluster(stack, cluster):
    sn = f"PR{uuid.uuid4().hex[:6]}"
    key = stack.prefix + "stream_traffic_ratio"
    stack.producer(**cluster_env(cluster, LJ_RATIO_REFRESH_MS=100))
    wait_routing(stack, sn + "-warm")
    resp = stack.post("/upload_health_data", {"data": reading(sn, BASE_S)})
    assert resp.status_code == 200 and resp.json()["status"] == "success"   # ratio 0: legacy
    client_of(cluster)(key).set(key, "1")
    wait_for(lambda: stack.get("/api/stream_traffic_ratio").json()["current_ratio"] == 1,
             timeout=10, what="the ratio read from the cluster")
    resp = stack.post("/upload_health_data", {"data": reading(sn, BASE_S + 1)})
    assert resp.status_code == 200 and resp.json()["status"] == "accepted"
    # And set through the producer: the key on the master of its slot.
    resp = requests.post(stack.url + "/api/stream_traffic_ratio", json={"ratio": 0.25},
                         timeout=5)
    assert resp.status_code == 200, resp.text
    assert client_of(cluster)(key).get(key) == "0.25"


def test_one_shard_on_a_cluster_is_written_under_the_tagged_name(stack, cluster):
    """The consumer reads '<stream>:{0}' on a cluster even with one shard (its
    scripts name a stream and its side keys): the producer writes there."""
    sn = f"P1{uuid.uuid4().hex[:6]}"
    env = cluster_env(cluster, LJ_STREAM_SHARDS=1)
    stack.producer(**env)
    wait_routing(stack, sn)
    resp = upload(requests.Session(), stack, sn, BASE_S + 1)
    assert resp.status_code == 200, resp.text
    of = client_of(cluster)
    assert of(shard(stack, 0)).xlen(shard(stack, 0)) == 2
    stack.consumer("--workers", "1", **dict(consumer_env(cluster), LJ_STREAM_SHARDS=1))
    wait_for(lambda: stored(stack, sn) == {(sn, BASE_S): 1, (sn, BASE_S + 1): 1}, timeout=30,
             what="both uploads stored")


class Load(threading.Thread):
    """Sequential uploads of 'devices' serials, round robin, for 'seconds':
    bounded, loopback only, stops by itself. Records (sn, ts, status, t)."""

    def __init__(self, stack, tag, devices=40, seconds=14.0, serials=None):
        super().__init__(daemon=True)
        self.stack, self.tag, self.devices, self.seconds = stack, tag, devices, seconds
        self.serials = serials or [f"{tag}{d:03d}" for d in range(devices)]
        self.results = []
        self.retry_after_missing = 0

    def run(self):
        s = requests.Session()
        end = time.monotonic() + self.seconds
        i = 0
        while time.monotonic() < end:
            sn = self.serials[i % len(self.serials)]
            ts = BASE_S + i
            try:
                resp = upload(s, self.stack, sn, ts)
                status = resp.status_code
                if status == 503 and "Retry-After" not in resp.headers:
                    self.retry_after_missing += 1
            except requests.RequestException:
                status = -1
            self.results.append((sn, ts, status, time.monotonic()))
            i += 1
            time.sleep(0.005)


def wait_calls(r):
    return int(r.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.parametrize("wait", [0, 1], ids=["no-wait", "wait-1-new-master"])
def test_a_slot_migrated_under_load_is_followed_through_ask_then_moved(stack, own_cluster, wait):
    """Without WAIT to another master; with WAIT 1 to a new, empty master
    (scale-out: it is in no slot map until the slot is its), under load of
    shard 0's devices only: while the slot migrates, each 200 needs a WAIT
    on the importing node (which holds the entry), not on the source master
    the map still names, and the link to it must stay up."""
    cluster = own_cluster
    tag = f"PM{uuid.uuid4().hex[:6]}-"
    stack.producer(**cluster_env(cluster, LJ_REDIS_WAIT_REPLICAS=wait))
    wait_routing(stack, tag + "warm")
    stack.consumer("--workers", "1", **consumer_env(cluster))
    key = shard(stack, 0)
    slot = cluster.keyslot(key)
    src = cluster.master_of_slot(slot)
    dst = cluster.add_master() if wait else next(m for m in cluster.masters() if m != src)
    serials = [sn for sn in (f"{tag}{d:03d}" for d in range(200)) if shard_of(sn) == 0][:20] \
        if wait else None
    load = Load(stack, tag, seconds=8.0, serials=serials)
    load.start()
    time.sleep(2)
    cluster.migrate_slot_begin(slot, src, dst)
    time.sleep(0.5)
    assert cluster.migrate_keys(slot, src, dst) >= 1     # the shard and its side keys
    t0, waits0 = time.monotonic(), wait_calls(cluster.node(dst))
    time.sleep(2)                                         # uploads follow ASK
    t1, waits1 = time.monotonic(), wait_calls(cluster.node(dst))
    cluster.migrate_slot_end(slot, dst)                   # and then MOVED
    load.join(60)
    assert not load.is_alive()
    assert {st for _, _, st, _ in load.results} == {200}
    if wait:        # (one upload may straddle t0, its WAIT then on the source)
        asked = sum(1 for _, _, st, t in load.results if t0 < t < t1 and st == 200)
        assert asked >= 5 and waits1 - waits0 >= asked - 1, (asked, waits1 - waits0)
    assert key not in cluster.node(src).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    assert cluster.node(dst).xlen(key) > 0
    log = open(stack.procs[0].log_path).read()
    assert f"ASK slot {slot} -> 127.0.0.1:{dst}" in log
    assert f"MOVED slot {slot} -> 127.0.0.1:{dst}" in log
    ok = {(sn, ts) for sn, ts, st, _ in load.results}
    wait_for(lambda: ok <= set(stored(stack, tag)), timeout=60,
             what="every upload stored after the migration")
    rows = stored(stack, tag)
    assert all(rows[k] == 1 for k in ok)
    of = client_of(cluster)
    added = sum(of(shard(stack, k)).xinfo_stream(shard(stack, k))["entries-added"]
                for k in range(SHARDS))
    assert added == len(ok) + 1                           # each added once (+ the warm-up)


def shard_of(sn, nshards=SHARDS):
    """The shard of device 'sn' (common/streams.c stream_shard_of)."""
    m = 0xFFFFFFFF
    h = 2166136261
    for b in sn.encode():
        h = ((h ^ b) * 16777619) & m
    h ^= 0x9E3779B9
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    h ^= h >> 16
    return (h * nshards) >> 32


class ClusterDown(threading.Thread):
    """Polls CLUSTER INFO on 'ports' every 50 ms until stopped; 'down' holds
    the instants at which one of them said cluster_state:fail (it then
    answers CLUSTERDOWN to every write, whichever master holds the slot)."""

    def __init__(self, cluster, ports):
        super().__init__(daemon=True)
        self.cluster, self.ports = cluster, ports
        self.down = []
        self.stop = threading.Event()

    def run(self):
        clients = [self.cluster.node(p) for p in self.ports]
        while not self.stop.is_set():
            for c in clients:
                try:
                    if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        self.down.append(time.monotonic())
                except Exception:
                    pass
            time.sleep(0.05)

    def covers(self, t, slack=0.3):
        """'t' within the span from the first 'down' to the last (one
        failover: one window), widened by 'slack' for the polling."""
        return bool(self.down) and self.down[0] - slack <= t <= self.down[-1] + slack


@pytest.mark.parametrize("stalled_s", [0, 0.3], ids=["killed", "stalled-then-killed"])
def test_a_killed_master_503s_only_the_devices_of_its_shards(stack, own_cluster, stalled_s):
    """Issue 18, the sceptic's test of the breaker on a cluster: under load
    from devices of all 6 shards, kill -9 of one master of three. Devices
    whose shard lives on a live master keep getting 200: the only 503 they
    may get is while a live master itself says cluster_state:fail (the dead
    one flagged FAIL, its replica not yet promoted; with the default
    cluster-require-full-coverage every master then answers CLUSTERDOWN to
    every write, which no producer can turn into a 200) -- none before it,
    none after it. Devices of the dead master get 200 or 503 + Retry-After.
    Every 200 is stored once and routing resumes. Eight clients in parallel.
    Killed outright, the master has about one XADD in flight on loopback;
    stalled 0.3 s first, every client's upload to its shards waits on it
    and all are lost at once, more than --breaker-failures (5): what a
    fleet's concurrency or a network's round trip gives a plain kill."""
    cluster = own_cluster
    tag = f"PB{uuid.uuid4().hex[:6]}-"
    stack.producer(**cluster_env(cluster))      # the default breaker: 5 failures, 2 s
    wait_routing(stack, tag + "warm")
    stack.consumer("--workers", "1", **consumer_env(cluster))
    home = [cluster.master_of_slot(cluster.keyslot(shard(stack, k))) for k in range(SHARDS)]
    victim = home[0]
    loads = [Load(stack, f"{tag}{j}-", devices=12, seconds=10.0) for j in range(8)]
    devices = {f"{ld.tag}{d:03d}" for ld in loads for d in range(ld.devices)}
    assert {shard_of(sn) for sn in devices} == set(range(SHARDS))
    # shard_of is the producer's: each device's warm-up entry is on its shard.
    ids = send(stack, f"{tag}w-", 12)
    of = client_of(cluster)
    for sn, sid in ids.items():
        k = shard_of(sn)
        assert of(shard(stack, k)).xrange(shard(stack, k), sid, sid), sn
    monitor = ClusterDown(cluster, [m for m in cluster.masters() if m != victim])
    monitor.start()
    for ld in loads:
        ld.start()
    time.sleep(3)
    killed_at = time.monotonic()
    cluster.kill(victim, stalled_s)
    for ld in loads:
        ld.join(60)
        assert not ld.is_alive()
    cluster.wait_failover(victim)
    monitor.stop.set()
    monitor.join(5)
    results = [r for ld in loads for r in ld.results]
    assert {st for _, _, st, _ in results} <= {200, 503}
    assert sum(ld.retry_after_missing for ld in loads) == 0
    live = [(sn, st, t) for sn, _, st, t in results if home[shard_of(sn)] != victim]
    dead = [(sn, st, t) for sn, _, st, t in results if home[shard_of(sn)] == victim]
    assert any(st == 503 for _, st, _ in dead), "the kill was not felt"
    live_503 = [t for _, st, t in live if st == 503]
    outside = [round(t - killed_at, 2) for t in live_503 if not monitor.covers(t)]
    down = [round(t - killed_at, 2) for t in monitor.down]
    print(f"\nload: {len(results)} uploads; live-master devices: {len(live)}, "
          f"{len(live_503)} 503; dead-master devices: {len(dead)}, "
          f"{sum(st == 503 for _, st, _ in dead)} 503; cluster down "
          f"{down[:1]}..{down[-1:]} s after the kill")
    log = open(stack.procs[0].log_path).read()
    assert not outside, (f"{len(outside)} 503s of live-master devices outside the cluster's "
                         f"down window, at {outside[:20]} s after the kill; breaker lines: "
                         f"{[line for line in log.splitlines() if 'breaker' in line][:10]}")
    # Routing resumed: after the last 503, every device got a 200.
    last_503 = max(t for _, st, t in live + dead if st == 503)
    assert last_503 - killed_at < 10
    assert {sn for sn, st, t in live + dead if t > last_503 and st == 200} == devices
    ok = {(sn, ts) for sn, ts, st, _ in results if st == 200}
    wait_for(lambda: ok <= set(stored(stack, tag)), timeout=60,
             what="every 200 stored after the failover")
    rows = stored(stack, tag)
    assert all(rows[k] == 1 for k in ok)
    # One breaker per master: the live ones never opened; "redis" keeps its
    # old keys and sums them; a master asked for in the last minute is shown.
    redis = requests.get(stack.url + "/api/stream_metrics", timeout=5).json()[
        "flow_control"]["breakers"]["redis"]
    masters = redis.pop("masters")
    assert set(redis) == {"state", "consecutive_failures", "opens", "refused", "retry_in_ms"}
    names = {f"127.0.0.1:{p}" for p in set(home) | set(cluster.masters())}
    alive = next(p for p in home if p != victim)
    assert set(masters) <= names and f"127.0.0.1:{alive}" in masters, masters
    assert all(masters[f"127.0.0.1:{p}"]["opens"] == 0 for p in home if p != victim)
    assert redis["opens"] == sum(m["opens"] for m in masters.values())
    if stalled_s:
        assert masters[f"127.0.0.1:{victim}"]["opens"] >= 1
    text = requests.get(stack.url + "/metrics", timeout=5).text
    assert 'ljwx_breaker_state{dependency="redis"} ' in text
    assert f'ljwx_breaker_master_opens_total{{master="127.0.0.1:{alive}"}} 0' in text

"""--redis-wait-replicas (LJ_REDIS_WAIT_REPLICAS, SPEC §3): an upload is
answered 200 only after WAIT confirms its entry on n replicas of its master.
On one Redis with a replica, and on a real 3-master, 3-replica cluster
where a master is killed with kill -9 under load: every 200 is stored
exactly once after its replica took over."""
import os
import subprocess
import time
import uuid

import pytest
import requests

from conftest import free_port, reading, wait_for
from test_producer_cluster import (BASE_S, Load, client_of, cluster_env, consumer_env,
                                   shard, stored, upload, wait_calls, wait_routing)


class Pair:
    """One Redis and, on demand, a replica of it (loopback)."""

    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.port = free_port()
        self.replica_port = None
        self.procs = []
        self._start(self.port, [])

    def _start(self, port, extra):
        d = os.path.join(self.tmp, f"redis-{port}")
        os.makedirs(d, exist_ok=True)
        log = open(os.path.join(d, "redis.log"), "ab")
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
             "--save", "", "--appendonly", "no"] + extra,
            stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: self._ping(port), what=f"redis {port}")

    @staticmethod
    def _ping(port):
        import redis
        try:
            return redis.Redis(port=port).ping()
        except redis.ConnectionError:
            return False

    def client(self):
        import redis
        return redis.Redis(port=self.port, decode_responses=True)

    def add_replica(self):
        self.replica_port = free_port()
        self._start(self.replica_port, ["--replicaof", "127.0.0.1", str(self.port)])
        wait_for(lambda: self.client().info("replication").get("connected_slaves") == 1 and
                 self.client().info("replication")["slave0"]["state"] == "online",
                 timeout=20, what="the replica online")

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    yield p
    p.stop()


def test_one_redis_answers_200_only_with_a_replica(stack, pair):
    sn = f"WR{uuid.uuid4().hex[:6]}"
    stack.producer(LJ_REDIS_PORT=pair.port, LJ_REDIS_WAIT_REPLICAS=1,
                   LJ_REDIS_TIMEOUT_MS=600)
    s = requests.Session()
    # No replica: WAIT counts 0 after its timeout; the entry exists, the
    # device is told to come back (stored once when it does: (sn, ts)).
    resp = upload(s, stack, sn, BASE_S)
    assert resp.status_code == 503, resp.text
    assert "Retry-After" in resp.headers
    assert pair.client().xlen(stack.stream()) == 1
    pair.add_replica()
    # The device retries (Retry-After): the link may still be coming back
    # from the short WAITs; once it is, WAIT 1 is confirmed.
    last = {}

    def accepted():
        last["resp"] = upload(s, stack, sn, BASE_S + 1)
        return last["resp"].status_code == 200
    wait_for(accepted, timeout=15, interval=0.5, what="a 200 once the replica is online")
    resp = last["resp"]
    assert resp.json()["stream_id"] == pair.client().xrevrange(stack.stream(), count=1)[0][0]
    assert wait_calls(pair.client()) >= 2
    log = open(stack.procs[0].log_path).read()
    assert "not confirmed" in log


def test_wait_0_sends_no_wait(stack, pair):
    stack.producer(LJ_REDIS_PORT=pair.port)
    resp = upload(requests.Session(), stack, f"W0{uuid.uuid4().hex[:6]}", BASE_S)
    assert resp.status_code == 200, resp.text
    assert wait_calls(pair.client()) == 0


def test_a_killed_master_with_wait_1_loses_no_200(stack, own_cluster):
    cluster = own_cluster
    tag = f"WK{uuid.uuid4().hex[:6]}-"
    stack.producer(**cluster_env(cluster, LJ_REDIS_WAIT_REPLICAS=1))
    wait_routing(stack, tag + "warm")
    stack.consumer("--workers", "1", **consumer_env(cluster))
    victim = cluster.master_of_slot(cluster.keyslot(shard(stack, 0)))
    load = Load(stack, tag, seconds=20.0)
    load.start()
    time.sleep(3)
    killed_at = time.monotonic()
    cluster.kill(victim)
    cluster.wait_failover(victim)
    # The promoted replica has no replica of its own: WAIT 1 confirms
    # nothing on its shards until the old master is back as its replica.
    time.sleep(2)
    restarted_at = time.monotonic()
    cluster.restart(victim)
    wait_for(lambda: cluster.healthy(), timeout=30, what="the old master back as a replica")
    healed_at = time.monotonic()
    load.join(60)
    assert not load.is_alive()
    statuses = {st for _, _, st, _ in load.results}
    assert statuses <= {200, 503}, statuses
    assert load.retry_after_missing == 0
    failed = [t for _, _, st, t in load.results if st == 503 and t > killed_at]
    assert failed, "the kill was not felt"
    # Between the failover and the restart the failed-over shards got no 200...
    orphan = {sn for sn, _, st, t in load.results
              if killed_at + 0.5 < t < restarted_at and st == 503}
    assert orphan
    # ... and once a replica is back, every device gets 200 again.
    late = {sn for sn, _, st, t in load.results if t > healed_at + 3 and st == 200}
    assert len(late) == load.devices, (len(late), healed_at, load.results[-1][3])
    ok = {(sn, ts) for sn, ts, st, _ in load.results if st == 200}
    wait_for(lambda: ok <= set(stored(stack, tag)), timeout=60,
             what="every 200 stored after the failover")
    rows = stored(stack, tag)
    assert all(rows[k] == 1 for k in ok)
    assert all(wait_calls(client_of(cluster)(shard(stack, k))) > 0 for k in range(6))
    print(f"\nload: {len(load.results)} uploads, {len(ok)} 200, {len(failed)} 503 after the kill")

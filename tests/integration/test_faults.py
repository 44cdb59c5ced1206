"""Fault matrix (SPEC §5.1, §8): a driver posts known uploads (unique device
and timestamp keys) through both paths while a fault is injected; after
recovery it proves that
  (1) every upload answered 2xx is stored exactly once,
  (2) none answered 4xx/5xx is stored,
  (3) nothing is left pending or undelivered in the group,
  (4) the dead-letter stream holds exactly the poison entries."""
import json
import signal
import threading
import time
import uuid

import requests

from conftest import wait_for

BASE_S = 1_700_000_000


class Driver:
    """Posts uploads in the background: even ones to v2, odd ones to the
    routed endpoint (ratio 0.5), each with its own (device, ts) key."""

    def __init__(self, stack, rate=40):
        self.stack = stack
        self.prefix = f"F{uuid.uuid4().hex[:6]}"
        self.rate = rate
        self.results = {}       # key -> status
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.n = 0

    def key(self, i):
        return (f"{self.prefix}-{i % 50:02d}", BASE_S + i)

    def run(self):
        session = requests.Session()
        while not self.stop.is_set():
            i = self.n
            self.n += 1
            sn, ts = self.key(i)
            path = "/upload_health_data_v2" if i % 2 == 0 else "/upload_health_data"
            body = json.dumps({"deviceSn": sn, "heartRate": 60 + i % 40, "timestamp": ts})
            try:
                status = session.post(self.stack.url + path, data=body, timeout=10).status_code
            except requests.RequestException:
                status = 0      # no answer: neither promised nor refused
                session = requests.Session()
            self.results[(sn, ts)] = status
            time.sleep(1.0 / self.rate)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)

    def stored(self):
        got = self.stack.s.sql(
            "SELECT device_sn, extract(epoch FROM ts)::bigint, count(*) FROM t_user_health_data"
            " WHERE device_sn LIKE %s GROUP BY 1, 2", (self.prefix + "-%",))
        return {(sn, ts): n for sn, ts, n in got}

    def verify(self, poison_ids=()):
        stack = self.stack
        accepted = {k for k, s in self.results.items() if 200 <= s < 300}
        refused = {k for k, s in self.results.items() if s >= 400}
        assert accepted, "the driver got nothing accepted"

        def all_in():
            stored = self.stored()
            return all(stored.get(k) for k in accepted) and stored
        stored = wait_for(all_in, timeout=60, what="every accepted upload to be stored")
        # (1) exactly once
        assert all(n == 1 for n in stored.values()), {k: n for k, n in stored.items() if n > 1}
        assert all(stored.get(k) == 1 for k in accepted)
        # (2) nothing refused is stored
        assert not refused & set(stored), refused & set(stored)
        # (3) nothing pending or undelivered
        r = stack.s.redis()

        def drained():
            groups = r.xinfo_groups(stack.stream())
            return all(g["pending"] == 0 and g["lag"] == 0 for g in groups)
        wait_for(drained, timeout=30, what="the health group to drain")
        # (4) dead letters are exactly the poison entries
        dead = {e[1]["dead_id"] for e in r.xrange(stack.stream() + ":dead")}
        assert dead == set(poison_ids)
        return accepted, refused


def start(stack, **consumer_env):
    stack.producer(LJ_RATIO_REFRESH_MS=100)
    requests.post(stack.url + "/api/stream_traffic_ratio", data='{"ratio":0.5}', timeout=5)
    wait_for(lambda: requests.get(stack.url + "/api/stream_traffic_ratio", timeout=5)
             .json()["current_ratio"] == 0.5, what="ratio 0.5")
    return stack.consumer(**consumer_env)


def test_consumer_killed_mid_batch_five_times(stack):
    consumer = start(stack, LJ_BATCH_SIZE=5)
    poison = []
    with Driver(stack) as d:
        for round_ in range(5):
            time.sleep(0.8)
            if round_ == 2:     # a poison entry in the middle of the traffic
                poison.append(stack.s.redis().xadd(stack.stream(), {
                    "payload": json.dumps([{"device_sn": d.prefix + "-P", "ts": 1_700_000_000_000,
                                            "heart_rate": 4_000_000_000,
                                            "source_method": "api"}])}))
            consumer.p.send_signal(signal.SIGKILL)
            consumer.p.wait()
            stack.procs.remove(consumer)
            consumer = stack.consumer(LJ_BATCH_SIZE=5)
        time.sleep(0.5)
    d.verify(poison)


def test_postgres_stopped_twenty_seconds(stack, servers):
    start(stack)
    with Driver(stack) as d:
        time.sleep(1)
        servers.stop_pg()
        try:
            before = dict(d.results)
            time.sleep(20)
            during = {k: s for k, s in d.results.items() if k not in before}
        finally:
            servers.start_pg()
        time.sleep(2)
    # The stream path kept accepting; the legacy path answered 503.
    statuses = [(k[1] % 2, s) for k, s in during.items()]
    assert any(parity == 0 and s == 200 for parity, s in statuses)
    assert all(s == 503 for parity, s in statuses if parity == 1 and s != 200)
    d.verify()


def test_redis_restarted_with_its_aof(stack, servers):
    start(stack, LJ_BATCH_SIZE=5)
    r = stack.s.redis()
    with Driver(stack) as d:
        time.sleep(1.5)
        time.sleep(1.1)     # appendfsync everysec: what was accepted is on disk
        servers.stop_redis()
        try:
            time.sleep(3)
        finally:
            servers.start_redis()
        time.sleep(3)
    groups = {g["name"] for g in r.xinfo_groups(stack.stream())}
    assert stack.prefix + "health_processors" in groups     # the group survived
    accepted, refused = d.verify()
    assert refused      # v2 uploads got 503 while Redis was down


def test_frozen_consumer_resumed_after_a_claim_does_not_store_twice(stack):
    frozen = start(stack, LJ_BATCH_SIZE=20, LJ_CLAIM_IDLE_MS=1500, LJ_UPKEEP_INTERVAL_MS=200)
    other = stack.consumer(LJ_BATCH_SIZE=20, LJ_CLAIM_IDLE_MS=1500, LJ_UPKEEP_INTERVAL_MS=200)
    with Driver(stack) as d:
        time.sleep(1)
        frozen.p.send_signal(signal.SIGSTOP)
        time.sleep(4)       # its entries go idle and are claimed by the other
        frozen.p.send_signal(signal.SIGCONT)
        time.sleep(1)
    d.verify()
    assert other.alive() and frozen.alive()

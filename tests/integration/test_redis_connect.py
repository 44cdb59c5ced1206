"""Connecting to Redis (SPEC §3, docs/reliability.md): a Redis that drops
packets, a name that does not resolve and a resolver that does not answer
must neither hold requests nor block the producer's event loop; every connect
is bounded by --redis-connect-ms and retried with backoff."""
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests

from conftest import BIN, IS_ROOT, Proc, wait_for

BASE_S = 1_750_000_000


def serial(tag):
    return f"C-{tag}-{uuid.uuid4().hex[:10]}"


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


class DroppingRedis:
    """A loopback port that drops SYNs: a listening socket with backlog 0
    whose accept queue is kept full, so Linux drops further SYNs (as a
    firewalled or vanished host does). open() starts accepting and relays
    every connection to a real Redis."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        self.stopping = False
        self.threads = []

    def open(self, target_port):
        t = threading.Thread(target=self._accept, args=(target_port,), daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self, target_port):
        self.listener.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            t = threading.Thread(target=self._relay, args=(conn, target_port), daemon=True)
            t.start()
            self.threads.append(t)

    def _relay(self, a, target_port):
        try:
            b = socket.create_connection(("127.0.0.1", target_port))
        except OSError:
            a.close()
            return
        with a, b:
            while not self.stopping:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        for s in self.fillers:
            s.close()
        self.listener.close()


@pytest.fixture
def dropping():
    d = DroppingRedis()
    yield d
    d.close()


def connect_timeouts(log, port):
    return re.findall(rf"connect to 127\.0\.0\.1:{port} timed out after (\d+) ms; "
                      rf"retry in (\d+) ms", log)


def test_redis_that_drops_packets_is_timed_out_and_retried_with_backoff(stack, servers,
                                                                         dropping):
    prod = stack.producer(LJ_REDIS_PORT=dropping.port, LJ_REDIS_CONNECT_MS=300)
    sn = serial("drop")
    resp, took = timed(lambda: requests.get(stack.url + "/api/health", timeout=10))
    assert resp.json()["redis"] is False and took < 2
    resp, took = timed(lambda: stack.post("/upload_health_data_v2",
                                          {"deviceSn": sn, "timestamp": BASE_S}))
    assert resp.status_code == 503 and took < 2
    resp, took = timed(lambda: stack.post("/upload_health_data",
                                          {"deviceSn": sn, "timestamp": BASE_S + 1}))
    assert resp.status_code == 200 and resp.json()["status"] == "success" and took < 3
    found = wait_for(lambda: len(connect_timeouts(prod.output(), dropping.port)) >= 3 and
                     connect_timeouts(prod.output(), dropping.port), timeout=5,
                     what="three connect timeouts in the log")
    delays = [int(d) for _, d in found]
    assert all(t == "300" for t, _ in found)
    assert delays == sorted(delays) and delays[0] < delays[-1], delays
    # The same port starts answering (relayed to the real Redis): the link comes back.
    dropping.open(servers.redis_port)
    wait_for(lambda: stack.post("/upload_health_data_v2", {"deviceSn": sn}).status_code == 200,
             timeout=10, what="the stream path to come back")
    assert requests.get(stack.url + "/api/health", timeout=5).json()["redis"] is True


def test_pool_and_consumer_redis_connects_are_bounded(stack, dropping):
    stack.producer(LJ_REDIS_PORT=dropping.port, LJ_REDIS_CONNECT_MS=300)
    resp, took = timed(lambda: requests.get(stack.url + "/api/stream_stats", timeout=10))
    assert resp.status_code == 503 and took < 1.5, took
    cons = stack.consumer(LJ_REDIS_PORT=dropping.port, LJ_REDIS_CONNECT_MS=300)
    pattern = f"redis 127.0.0.1:{dropping.port}: Connection timed out"
    wait_for(lambda: cons.output().count(pattern) >= 2, timeout=4,
             what="two bounded consumer connects")


def test_redis_host_name_is_resolved_off_the_loop(stack):
    prod = stack.producer(LJ_REDIS_HOST="localhost")
    wait_for(lambda: requests.get(stack.url + "/api/health", timeout=5).json()["redis"],
             what="the link to connect")
    sn = serial("name")
    assert stack.post("/upload_health_data_v2", {"deviceSn": sn}).status_code == 200
    assert re.search(r"resolved localhost to 127\.0\.0\.1", prod.output())


def test_unresolvable_redis_host_gives_503_fast_and_says_so(stack):
    prod = stack.producer(LJ_REDIS_HOST="no-such-host.invalid")
    resp, took = timed(lambda: stack.post("/upload_health_data_v2", {"deviceSn": serial("nx")}))
    assert resp.status_code == 503 and took < 2
    wait_for(lambda: "cannot resolve redis host no-such-host.invalid" in prod.output(),
             what="a clear log line")
    resp, took = timed(lambda: requests.get(stack.url + "/api/health", timeout=5))
    assert resp.status_code == 200 and resp.json()["redis"] is False and took < 2


@pytest.mark.skipif(not IS_ROOT or shutil.which("unshare") is None,
                    reason="needs root and unshare (a private /etc/resolv.conf)")
def test_resolver_that_does_not_answer_does_not_block_the_loop(stack, tmp_path):
    """The producer runs in a mount namespace whose resolv.conf names a DNS
    server that reads nothing: each lookup of the Redis host takes the whole
    resolver timeout (2 s). Meanwhile /api/health must keep answering fast."""
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        dns.bind(("127.0.0.77", 53))
    except OSError as e:
        pytest.skip(f"cannot bind the silent DNS server: {e}")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.77\noptions timeout:2 attempts:1\n")
    try:
        argv = ["unshare", "-m", "sh", "-c",
                f"mount --bind {resolv} /etc/resolv.conf && exec \"$0\"",
                os.path.join(BIN, "ljwx-producer")]
        env = stack.env(LJ_REDIS_HOST="redis.silent-dns.example",
                        LJ_REDIS_CONNECT_MS=300)
        prod = Proc("ljwx-producer", argv, env, str(tmp_path / "producer-dns.log"))
        stack.procs.append(prod)

        def up():
            try:
                return requests.get(stack.url + "/api/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, timeout=10, what="the producer to answer")
        worst = 0.0
        end = time.monotonic() + 6
        while time.monotonic() < end:
            resp, took = timed(lambda: requests.get(stack.url + "/api/health", timeout=10))
            assert resp.status_code == 200
            worst = max(worst, took)
            time.sleep(0.05)
        assert worst < 0.5, f"/api/health took {worst:.2f} s while the name was resolved"
        wait_for(lambda: "cannot resolve redis host redis.silent-dns.example" in prod.output(),
                 what="the resolver timeout in the log")
    finally:
        dns.close()

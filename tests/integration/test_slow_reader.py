"""A client that pipelines requests and never reads the answers (SPEC §2.3,
docs/producer.md "Output bound"): the producer stops reading it while its
unsent output is above --max-unsent-bytes, so memory stays bounded, other
clients are served, and the connection is closed after --send-timeout-ms."""
import socket
import threading
import time

import requests

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
MIB = 1 << 20


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Flooder(threading.Thread):
    """One connection, small receive buffer, pipelining REQUEST as fast as the
    socket takes it and reading nothing. 'error' is set when a send fails
    (the producer closed the connection), with the time it happened."""

    def __init__(self, port, seconds):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.until = time.monotonic() + seconds
        self.sent = 0
        self.error = None
        self.error_at = None
        self.stop = False

    def run(self):
        buf = memoryview(REQUEST * 2000)
        off = 0
        while not self.stop and time.monotonic() < self.until:
            try:
                n = self.sock.send(buf[off:])
            except socket.timeout:
                continue
            except OSError as e:
                self.error, self.error_at = e, time.monotonic()
                return
            self.sent += n
            off = (off + n) % len(buf)   # the stream stays whole requests

    def close(self):
        self.stop = True
        self.join(15)
        self.sock.close()


def timed(call):
    """(status or None when unanswered in 5 s, seconds taken)"""
    t0 = time.monotonic()
    try:
        status = call().status_code
    except requests.RequestException:
        status = None
    return status, time.monotonic() - t0


def test_pipelining_without_reading_keeps_memory_bounded(stack):
    proc = stack.producer()
    stack.post("/upload_health_data_v2", b"{}")         # warm up the allocator's pools
    requests.get(stack.url + "/metrics", timeout=5)
    before = rss_bytes(proc.p.pid)
    flood = Flooder(stack.http_port, 10)
    flood.start()
    answers = []
    peak = before
    try:
        while flood.is_alive():
            answers.append(timed(lambda: requests.get(stack.url + "/api/health", timeout=5)))
            answers.append(timed(lambda: stack.post("/upload_health_data_v2",
                                                    b'{"deviceSn":"SLOW1"}', timeout=5)))
            peak = max(peak, rss_bytes(proc.p.pid))
            if peak - before > 256 * MIB:
                break       # clearly unbounded: spare the shared machine
            time.sleep(0.2)
    finally:
        flood.close()
    after = max(peak, rss_bytes(proc.p.pid))
    worst = max(took for _, took in answers)
    print(f"rss before={before} after={after} sent={flood.sent} worst={worst:.3f}s")
    assert after - before < 32 * MIB, (before, after, flood.sent)
    assert all(status in (200, 400) for status, _ in answers), answers
    assert worst < 2.0, worst
    assert flood.sent > 0


def test_connection_stuck_above_the_bound_is_closed_after_the_timeout(stack):
    proc = stack.producer(LJ_SEND_TIMEOUT_MS=1000, LJ_MAX_UNSENT_BYTES=65536)
    before = rss_bytes(proc.p.pid)
    t0 = time.monotonic()
    flood = Flooder(stack.http_port, 8)
    flood.start()
    try:
        while flood.is_alive() and rss_bytes(proc.p.pid) - before < 256 * MIB:
            time.sleep(0.1)
    finally:
        flood.close()
    assert flood.error is not None, "the producer did not close the connection"
    # stops reading within moments, closes 1 s later; the client sees it at once
    assert flood.error_at - t0 < 5, flood.error_at - t0
    prom = requests.get(stack.url + "/metrics", timeout=5).text
    assert "ljwx_send_timeout_closes_total 1" in prom
    assert "ljwx_open_connections 1" in prom     # only the one asking


def test_pipelined_answers_resume_when_the_client_reads(stack):
    stack.producer(LJ_MAX_UNSENT_BYTES=65536, LJ_SEND_TIMEOUT_MS=5000)
    n = 300     # some 7 MB of answers from one read of 11 KB of requests
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=10) as s:
        s.sendall(REQUEST * n + b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)     # long enough for the producer to stop at the bound
        data = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    answers = data.count(b"HTTP/1.1 ")
    assert answers == n + 1 and data.count(b"HTTP/1.1 200 OK\r\n") == n + 1, answers
    assert data.rfind(b"HTTP/1.1 200") > data.rfind(b"# TYPE")     # in order: health last
    prom = requests.get(stack.url + "/metrics", timeout=5).text
    assert "ljwx_send_timeout_closes_total 0" in prom

"""Failover (issue 19): the whole stack on a multi-host DSN naming a real
primary and its streaming standby. Under load on both paths (the gray ratio
at one half: each device sticks to the stream or the legacy path), the
primary dies and the standby is promoted, as patroni or repmgr do. Every
upload answered 200 is stored exactly once on the new primary, nothing
valid is dead-lettered, the breaker and /api/health (what the dashboard
shows) report the outage and the recovery, and the ops scripts work on
the multi-host DSN."""
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

from conftest import TOP, free_port, reading, wait_for
from pg_standby import PgPair
from test_consumer import drained
from test_legacy_path import set_ratio

BASE_S = 1_762_000_000


@pytest.fixture
def pair():
    tmp = tempfile.mkdtemp(prefix="ljwx-ha-")
    p = PgPair(tmp)
    try:
        p.start()
        yield p
    finally:
        p.stop()
        if not os.environ.get("LJ_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


class Load:
    """Threads posting one new reading at a time to /upload_health_data,
    each from a new device (so both paths get some), recording every
    answer: (device, status, monotonic time)."""

    def __init__(self, stack, tag, threads=4):
        self.stack = stack
        self.tag = tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, t):
        k = 0
        while not self.stop.is_set():
            sn = f"{self.tag}-{t}-{k}"
            try:
                status = self.stack.post("/upload_health_data", reading(sn, BASE_S + k),
                                         timeout=10).status_code
            except requests.RequestException as e:
                status = type(e).__name__
            with self.lock:
                self.answers.append((sn, status, time.monotonic()))
            k += 1
            time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def count(self, status, since=0.0):
        with self.lock:
            return sum(1 for _, s, t in self.answers if s == status and t >= since)


def pg_view(stack):
    """What the dashboard shows of PostgreSQL: /api/health's flag and the
    breaker of /api/stream_health."""
    health = requests.get(stack.url + "/api/health", timeout=5).json()
    flow = requests.get(stack.url + "/api/stream_health", timeout=5).json()["flow_control"]
    return health["postgres"], flow["breakers"]["postgres"]


@pytest.mark.parametrize("how", ["stopped", "fenced"])
def test_failover_under_load_stores_every_200_once_on_the_new_primary(stack, pair, how):
    """'stopped': the primary dies (pg_ctl stop -m immediate); 'fenced': it
    stays up read-only with our connections open (writes fail with 25006,
    which must mean "reconnect", never "poison")."""
    pg = dict(LJ_PG_DSN=pair.dsn(), LJ_PG_POOLED=0, LJ_PG_CONNECT_TIMEOUT_S=2,
              LJ_PG_REPLY_TIMEOUT_MS=3000, LJ_PG_STATEMENT_TIMEOUT_MS=2000)
    stack.producer(LJ_BREAKER_FAILURES=2, LJ_BREAKER_COOLDOWN_MS=300,
                   LJ_BREAKER_MAX_COOLDOWN_MS=1000, LJ_HEALTH_TIMEOUT_MS=1000,
                   LJ_POOL_REQUEST_TIMEOUT_MS=4000, **pg)
    stack.consumer(LJ_WORKERS=2, **pg)
    set_ratio(stack, 0.5)
    tag = f"FO{uuid.uuid4().hex[:6]}"
    with Load(stack, tag) as load:
        wait_for(lambda: load.count(200) >= 40, timeout=20, what="uploads before the failover")
        assert pg_view(stack)[0] is True
        opens_before = pg_view(stack)[1]["opens"]
        if how == "stopped":
            pair.stop_primary()
        else:
            pair.fence_primary()
        t_down = time.monotonic()
        # The outage, as the dashboard sees it: PostgreSQL down, breaker open.
        wait_for(lambda: pg_view(stack)[0] is False, timeout=10, what="/api/health to say down")
        assert pair.standby.sql("SELECT pg_is_in_recovery()") == [(True,)]
        wait_for(lambda: pg_view(stack)[1]["state"] == "open", timeout=10,
                 what="the postgres breaker to open")
        time.sleep(1)
        stream_200_in_outage = load.count(200, since=t_down)
        pair.promote()
        t_up = time.monotonic()
        # The recovery, by itself: no restart of ours.
        wait_for(lambda: pg_view(stack)[0] is True and pg_view(stack)[1]["state"] == "closed",
                 timeout=30, what="/api/health and the breaker to recover")
        print(f"failover[{how}]: recovered {time.monotonic() - t_up:.1f} s after the promotion,"
              f" {t_up - t_down:.1f} s after the primary went")
        wait_for(lambda: load.count(200, since=time.monotonic() - 0.5) > 0, timeout=10,
                 what="uploads answered 200 again")
        time.sleep(2)
    wait_for(lambda: drained(stack), timeout=60, what="the stream to drain")
    assert pg_view(stack)[1]["opens"] > opens_before
    assert stream_200_in_outage > 0     # the stream path kept answering meanwhile

    ok = {sn for sn, status, _ in load.answers if status == 200}
    odd = {status for _, status, _ in load.answers if status not in (200, 503)}
    assert not odd, odd
    stored = dict(pair.standby.sql(
        "SELECT device_sn, count(*) FROM t_user_health_data WHERE device_sn LIKE %s"
        " GROUP BY device_sn", (tag + "-%",)))
    missing = ok - set(stored)
    assert not missing, f"{len(missing)} uploads answered 200 not stored: {sorted(missing)[:5]}"
    assert all(stored[sn] == 1 for sn in ok)
    # Both paths stored, before and after the failover.
    paths = dict(pair.standby.sql(
        "SELECT upload_method, count(*) FROM t_user_health_data WHERE device_sn LIKE %s"
        " GROUP BY upload_method", (tag + "-%",)))
    assert paths.get("optimized", 0) > 0 and paths.get("stream_v2", 0) > 0, paths
    assert load.count(200, since=t_up) > 0
    # Nothing valid was dead-lettered, in Redis or in PostgreSQL.
    assert stack.s.redis().xlen(stack.stream() + ":dead") == 0
    assert pair.standby.sql("SELECT count(*) FROM t_dead_letter") == [(0,)]
    # The ops scripts take the same multi-host DSN.
    env = dict(stack.env(), LJ_PG_DSN=pair.dsn())
    out = subprocess.run(["/usr/bin/python3", os.path.join(TOP, "scripts", "consistency"),
                          "--minutes", "10"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr

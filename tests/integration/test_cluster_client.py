"""The synchronous Redis client of the consumers and tools (common/rconn.c)
against a real 3-master, 3-replica Redis Cluster: slot routing, MOVED and
ASK during a live slot migration, and a master killed with kill -9. Driven
through tests/tools/rconn_probe, one command a line."""
import os
import select
import subprocess
import time


from conftest import TOP, free_port, wait_for

# Test tools are built with ASan only (Makefile: TOOLS).
PROBE = os.path.join(TOP, "build", "asan", "tests", "tools", "rconn_probe")


class Probe:
    def __init__(self, *args):
        self.p = subprocess.Popen([PROBE, *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.read() == "R status ready"

    def read(self, timeout=15):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert r, "rconn_probe did not answer"
        return self.p.stdout.readline().rstrip("\n")

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.read()

    def counts(self):
        c, *n = self.cmd("counts").split()
        assert c == "C"
        return dict(zip(("moved", "ask", "retries", "refreshes"), map(int, n)))

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(20)
        err = self.p.stderr.read()
        assert rc == 0, err         # ASan reports leaks and errors as a failure
        return err


def where(cluster, key):
    """The masters holding 'key': CLUSTER GETKEYSINSLOT lists a node's own
    keys of a slot, with no redirect."""
    slot = cluster.keyslot(key)
    return [m for m in cluster.masters()
            if key in cluster.node(m).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10000)]


def test_commands_reach_the_master_of_their_slot(cluster):
    pr = Probe("--seeds", cluster.seeds())
    keys = [f"dev:{i}" for i in range(300)]
    for k in keys:
        assert pr.cmd(f"{k} SET {k} v-{k}") == "R status OK"
    for k in keys[:50]:
        assert pr.cmd(f"{k} GET {k}") == f"R str v-{k}"
    holders = {}
    for k in keys:
        w = where(cluster, k)
        assert w == [cluster.master_of_slot(cluster.keyslot(k))], k
        holders[w[0]] = holders.get(w[0], 0) + 1
    assert sorted(holders) == cluster.masters()     # all three masters took keys
    assert pr.counts()["moved"] == 0                 # the map was right from the start
    # A key's hash tag decides: a shard and its dead letters share a node.
    assert pr.cmd("s:{3} XADD s:{3} * f v").startswith("R str ")
    assert pr.cmd("s:{3}:dead XADD s:{3}:dead * f v").startswith("R str ")
    assert where(cluster, "s:{3}") == where(cluster, "s:{3}:dead")
    # A command's own error is passed through, not taken for a redirect.
    assert pr.cmd("s:{3} INCR s:{3}").startswith("E WRONGTYPE")
    pr.close()


def test_seeds_that_are_down_are_skipped_and_a_bad_list_refused(cluster):
    dead = free_port()
    pr = Probe("--seeds", f"127.0.0.1:{dead},{cluster.seeds()}")
    assert pr.cmd("a GET a") == "R nil -"
    pr.close()
    out = subprocess.run([PROBE, "--seeds", f"127.0.0.1:{dead}"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and out.stdout.startswith("N ")
    out = subprocess.run([PROBE, "--seeds", "127.0.0.1"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and "host:port" in out.stdout


def test_live_slot_migration_asks_then_moves(cluster):
    pr = Probe("--seeds", cluster.seeds())
    tag = "{mig}"
    slot = cluster.keyslot(tag)
    src = cluster.master_of_slot(slot)
    dst = [m for m in cluster.masters() if m != src][0]
    keys = [f"k{i}:{tag}" for i in range(40)]
    for k in keys:
        assert pr.cmd(f"{k} SET {k} {k}") == "R status OK"

    cluster.migrate_slot_begin(slot, src, dst)
    moved = cluster.migrate_keys(slot, src, dst, count=20)
    assert moved == 20
    # Every key answers, wherever it is now: ASK for those already moved.
    for k in keys:
        assert pr.cmd(f"{k} GET {k}") == f"R str {k}"
    # A new key of a migrating slot is created on the destination (ASK).
    assert pr.cmd(f"new:{tag} SET new:{tag} 1") == "R status OK"
    assert where(cluster, f"new:{tag}") == [dst]
    asks = pr.counts()["ask"]
    assert asks >= 20

    while cluster.migrate_keys(slot, src, dst):
        pass
    cluster.migrate_slot_end(slot, dst)
    # Now the old owner answers MOVED; the map is re-learnt, then no more.
    for k in keys:
        assert pr.cmd(f"{k} GET {k}") == f"R str {k}"
    n = pr.counts()
    assert n["moved"] >= 1 and n["refreshes"] >= 2
    for k in keys:
        assert pr.cmd(f"{k} GET {k}") == f"R str {k}"
    assert pr.counts()["moved"] == n["moved"]
    for k in keys + [f"new:{tag}"]:
        assert where(cluster, k) == [dst], k            # exactly one copy
    pr.close()


def test_a_killed_master_is_replaced_and_the_client_follows(own_cluster):
    cluster = own_cluster
    pr = Probe("--seeds", cluster.seeds())
    key = "f:{fail}"
    assert pr.cmd(f"{key} SET {key} before") == "R status OK"
    assert pr.cmd(f"{key} WAIT 1 2000") == "R int 1"    # on its replica too
    victim = cluster.master_of_slot(cluster.keyslot(key))
    cluster.kill(victim)

    # Meanwhile: no reply or a cluster error, never a wrong answer.
    deadline = time.monotonic() + 30
    answer = None
    while time.monotonic() < deadline:
        answer = pr.cmd(f"{key} GET {key}")
        if answer.startswith("R "):
            break
        assert answer.startswith("N ") or answer.startswith("E CLUSTERDOWN"), answer
        time.sleep(0.2)
    assert answer == "R str before"
    assert victim not in cluster.masters()
    assert pr.cmd(f"{key} SET {key} after") == "R status OK"
    assert pr.cmd(f"{key} GET {key}") == "R str after"
    assert pr.counts()["refreshes"] >= 2
    pr.close()


def test_one_server_reconnects_by_itself(servers):
    pr = Probe("--server", f"127.0.0.1:{servers.redis_port}")
    assert pr.cmd("x SET rconn:x 1") == "R status OK"
    servers.stop_redis()
    assert pr.cmd("x GET rconn:x").startswith("N ")
    servers.start_redis()
    wait_for(lambda: pr.cmd("x GET rconn:x") == "R str 1", timeout=10,
             what="the probe to reconnect")
    assert pr.cmd("- PING") == "R status PONG"
    pr.close()

"""A real Redis Cluster on loopback for the tests: N masters with one
replica each, started in a temporary folder with redis-cli --cluster create,
and stopped. Plain redis-py clients per node (no cluster client needed)."""
import os
import random
import signal
import socket
import subprocess
import time

import redis

from conftest import wait_for

BUS_OFFSET = 10000      # a node's cluster bus listens on its port + 10000


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_cluster_port(taken):
    """A free loopback port whose bus port (+10000) is free too, below the
    ephemeral range so neither is handed out to a client meanwhile."""
    while True:
        p = random.randrange(20000, 30000)
        if p not in taken and _bindable(p) and _bindable(p + BUS_OFFSET):
            return p


class RedisCluster:
    def __init__(self, tmp, masters=3, replicas=1, node_timeout_ms=1000):
        self.dir = os.path.join(tmp, "cluster")
        self.masters_wanted = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.procs = {}     # port -> Popen

    # -- life -------------------------------------------------------------
    def start(self):
        n = self.masters_wanted * (1 + self.replicas)
        ports = []
        for _ in range(n):
            ports.append(free_cluster_port(ports))
        for p in ports:
            self._start_node(p)
        out = subprocess.run(
            ["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{p}" for p in ports]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(self.healthy, timeout=30, what="the cluster to be ok on every node")
        return self

    def _start_node(self, port):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        log = open(os.path.join(d, "redis.log"), "ab")
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--maxmemory", "256mb", "--maxmemory-policy", "noeviction"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._ping(port), what=f"redis {port} to start")

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def kill(self, port, stalled_s=0):
        """kill -9 of one node, as a crash. 'stalled_s' > 0: stopped that
        long first (SIGSTOP), as a node that hangs and then dies: the
        commands sent to it meanwhile wait on their replies, and lose them
        at once."""
        if stalled_s > 0:
            self.procs[port].send_signal(signal.SIGSTOP)
            time.sleep(stalled_s)
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait(10)

    def restart(self, port):
        self._start_node(port)

    # -- reading ----------------------------------------------------------
    def node(self, port):
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True,
                           socket_timeout=5)

    def _ping(self, port):
        try:
            return self.node(port).ping()
        except redis.exceptions.RedisError:
            return False

    def alive(self):
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def healthy(self, replicas=True):
        """Every live node says cluster_state:ok and sees every slot covered
        by a master it thinks is up, and every master's replicas are online."""
        try:
            for p in self.alive():
                info = self.node(p).execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
            masters = self.masters()
            if len(masters) != self.masters_wanted:
                return False
            for m in masters if replicas else []:   # each replica's first sync done
                info = self.node(m).info("replication")
                online = [v for k, v in info.items() if k.startswith("slave")
                          and isinstance(v, dict) and v.get("state") == "online"]
                if len(online) < self.replicas:
                    return False
            return True
        except redis.exceptions.RedisError:
            return False

    def slots(self):
        """[(start, end, master_port)] as the first live node sees them."""
        for p in self.alive():
            try:
                return [(int(r[0]), int(r[1]), int(r[2][1]))
                        for r in self.node(p).execute_command("CLUSTER", "SLOTS")]
            except redis.exceptions.RedisError:
                continue
        return []

    def masters(self):
        return sorted({m for _, _, m in self.slots()})

    def master_of_slot(self, slot):
        for a, b, m in self.slots():
            if a <= slot <= b:
                return m
        return None

    def keyslot(self, key):
        return int(self.node(self.alive()[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def node_id(self, port):
        return self.node(port).execute_command("CLUSTER", "MYID")

    def seeds(self):
        return ",".join(f"127.0.0.1:{p}" for p in sorted(self.alive()))

    def wait_failover(self, dead_port, timeout=30):
        """Until a replica took over the dead master's slots."""
        def done():
            ms = self.masters()
            return (dead_port not in ms and len(ms) == self.masters_wanted
                    and self.healthy(replicas=False))
        wait_for(done, timeout=timeout, interval=0.2, what="a replica to take over")

    def _join(self):
        """A new node met by the cluster; its port, once every node knows it."""
        port = free_cluster_port(list(self.procs))
        self._start_node(port)
        self.node(self.masters()[0]).execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        ids = [self.node_id(p) for p in self.alive()]

        def known():       # every node knows every other, the new one too
            return all(all(i in nodes for i in ids) and "handshake" not in nodes for nodes in
                       (self.node(p).execute_command("CLUSTER", "NODES") for p in self.alive()))
        wait_for(known, timeout=30, interval=0.1, what="every node to know the new one")
        return port

    def add_master(self):
        """A new, empty master and its replica join (CLUSTER MEET,
        REPLICATE), as an operator scales out: it owns no slot until one is
        migrated to it. The master's port."""
        port = self._join()
        replica = self._join()
        self.node(replica).execute_command("CLUSTER", "REPLICATE", self.node_id(port))

        def online():
            info = self.node(port).info("replication")
            return any(k.startswith("slave") and isinstance(v, dict) and
                       v.get("state") == "online" for k, v in info.items())
        wait_for(online, timeout=30, interval=0.1, what="the new master's replica online")
        self.masters_wanted += 1
        return port

    def migrate_slot_begin(self, slot, src, dst):
        """MIGRATING on the source, IMPORTING on the destination (the slot is
        then served by both: ASK for keys already moved)."""
        self.node(dst).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                       self.node_id(src))
        self.node(src).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                       self.node_id(dst))

    def migrate_keys(self, slot, src, dst, count=100):
        """Moves up to 'count' keys of 'slot' from src to dst; how many."""
        keys = self.node(src).execute_command("CLUSTER", "GETKEYSINSLOT", slot, count)
        if keys:
            self.node(src).execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000,
                                           "KEYS", *keys)
        return len(keys)

    def migrate_slot_end(self, slot, dst):
        """The slot is the destination's, told to every master."""
        dst_id = self.node_id(dst)
        for m in [dst] + [m for m in self.masters() if m != dst]:
            self.node(m).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        time.sleep(0.1)

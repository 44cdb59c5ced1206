"""Integration harness: real redis-server and postgres processes on free
loopback ports in a temporary folder, the schema applied with the project's
migration runner, and the producer/consumer binaries run as real processes.

Servers live for the whole session; each test gets its own stream prefix, so
tests never see each other's streams, and uses its own device serials.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg
import pytest
import redis
import requests

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("LJ_BIN_DIR", os.path.join(TOP, "build", "asan"))
PG_BIN = "/usr/lib/postgresql/15/bin"
IS_ROOT = os.geteuid() == 0


_KEYS = None


def stream_keys():
    """Every Redis key name and field, as `ljwx-consumer --print-keys` says."""
    global _KEYS
    if _KEYS is None:
        out = subprocess.run([os.path.join(BIN, "ljwx-consumer"), "--print-keys"],
                             capture_output=True, text=True, check=True, timeout=30)
        _KEYS = json.loads(out.stdout)
    return _KEYS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Polls cond() until it returns a truthy value; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def machine_key():
    """The host part of our consumer names: host name, "~", machine key (worker.h)."""
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    key = f"{boot}|{os.readlink('/proc/self/ns/pid')}".encode()
    h = 2166136261
    for b in key:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"{socket.gethostname().split(':')[0]}~{h:08x}"


def reading(sn, ts, hr=70):
    """One health record as a device sends it."""
    return {"deviceSn": sn, "heartRate": hr, "timestamp": ts}


def metric(stack, name, labels=""):
    """The value of one sample of the producer's /metrics."""
    text = requests.get(stack.url + "/metrics", timeout=5).text
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def as_pg(cmd):
    """postgres refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--"] + cmd if IS_ROOT else cmd


class Servers:
    def __init__(self, tmp):
        self.tmp = tmp
        self.redis_port = free_port()
        self.pg_port = free_port()
        self.redis_dir = os.path.join(tmp, "redis")
        self.pg_dir = os.path.join(tmp, "pg")
        self.dsn = f"host=127.0.0.1 port={self.pg_port} dbname=ljwx user=ljwx"
        # What our processes connect to (a PgBouncer with LJ_TEST_PGBOUNCER=1).
        self.client_dsn = self.dsn
        self.client_pooled = "0"
        self.redis_proc = None

    # -- redis ------------------------------------------------------------
    def start_redis(self, maxmemory="512mb"):
        os.makedirs(self.redis_dir, exist_ok=True)
        log = open(os.path.join(self.redis_dir, "redis.log"), "ab")
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--dir", self.redis_dir, "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"],
            stdout=log, stderr=subprocess.STDOUT)
        r = self.redis()
        wait_for(lambda: self._ping(r), what="redis to start")

    def stop_redis(self):
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(10)

    def redis(self):
        return redis.Redis(host="127.0.0.1", port=self.redis_port, decode_responses=True)

    @staticmethod
    def _ping(r):
        try:
            return r.ping()
        except redis.exceptions.ConnectionError:
            return False

    # -- postgres ---------------------------------------------------------
    # Tests run PostgreSQL without fsync (fast, and durability is not what
    # they check); durable=True is what a user runs, for the benchmark's
    # headline figures: every commit flushed to disk before it returns.
    FAST_SETTINGS = {"fsync": "off"}
    DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

    def start_pg(self, durable=False):
        """Starts (or restarts on the same data and port) PostgreSQL, with
        DURABLE_SETTINGS when 'durable', else FAST_SETTINGS."""
        self.durable = durable
        settings = self.DURABLE_SETTINGS if durable else self.FAST_SETTINGS
        data = os.path.join(self.pg_dir, "data")
        if not os.path.exists(data):
            os.makedirs(self.pg_dir, exist_ok=True)
            if IS_ROOT:
                shutil.chown(self.tmp, "postgres")
                shutil.chown(self.pg_dir, "postgres")
            subprocess.run(as_pg([f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A",
                                  "trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                           check=True, stdout=subprocess.DEVNULL)
        subprocess.run(as_pg([f"{PG_BIN}/pg_ctl", "-D", data, "-l",
                              os.path.join(self.pg_dir, "postgres.log"), "-w", "-s", "start",
                              "-o", f"-p {self.pg_port} -k {self.pg_dir} "
                                    "-c listen_addresses=127.0.0.1 "
                                    + " ".join(f"-c {k}={v}" for k, v in settings.items())]),
                       check=True)

    def pg_settings(self):
        """The running server's durability settings, as SHOW reports them."""
        return {k: self.sql(f"SHOW {k}")[0][0] for k in self.DURABLE_SETTINGS}

    def stop_pg(self):
        data = os.path.join(self.pg_dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(as_pg([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "-s",
                                  "stop"]), check=False)

    def create_db(self):
        with psycopg.connect(f"host=127.0.0.1 port={self.pg_port} dbname=postgres "
                             "user=postgres", autocommit=True) as c:
            c.execute("CREATE ROLE ljwx LOGIN")
            c.execute("CREATE DATABASE ljwx OWNER ljwx")

    def migrate(self):
        return subprocess.run([os.path.join(TOP, "scripts", "migrate.sh"), "--dsn", self.dsn],
                              check=True, capture_output=True, text=True)

    def sql(self, query, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None


class PgBouncer:
    """A real PgBouncer (Debian's 1.18) in front of 'pg_port' on loopback,
    pool_mode=transaction, the test role let in by an auth_file (the
    servers trust loopback, so auth_type=trust: the role must still be
    listed). dsn() is what our processes connect to; they need
    LJ_PG_POOLED=1 (pgbouncer refuses the startup 'options' otherwise)."""

    def __init__(self, tmp, pg_port, pool_size=20, name="pgbouncer", server_lifetime=3600):
        self.dir = os.path.join(tmp, name)
        self.port = free_port()
        self.pg_port = pg_port
        self.pool_size = pool_size
        self.server_lifetime = server_lifetime  # s a server session lives
        self.proc = None

    def dsn(self, dbname="ljwx", user="ljwx"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "users.txt"), "w") as f:
            f.write('"ljwx" ""\n"ljwx_report" ""\n"postgres" ""\n')
        with open(os.path.join(self.dir, "pgbouncer.ini"), "w") as f:
            f.write(f"""[databases]
* = host=127.0.0.1 port={self.pg_port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
pool_mode = transaction
default_pool_size = {self.pool_size}
server_lifetime = {self.server_lifetime}
max_client_conn = 400
server_reset_query =
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        if IS_ROOT:     # pgbouncer will not run as root either
            shutil.chown(self.dir, "postgres")
            for n in os.listdir(self.dir):
                shutil.chown(os.path.join(self.dir, n), "postgres")
        self.proc = subprocess.Popen(as_pg(["pgbouncer", os.path.join(self.dir,
                                                                      "pgbouncer.ini")]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._up, what="pgbouncer to accept connections")

    def _up(self):
        if self.proc.poll() is not None:
            pytest.fail("pgbouncer exited:\n" + self.log())
        try:
            with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=2) as c:
                return c.execute("SELECT 1").fetchone()[0] == 1
        except psycopg.OperationalError:
            return False

    def log(self):
        try:
            with open(os.path.join(self.dir, "pgbouncer.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# LJ_TEST_PGBOUNCER=1: every producer, consumer and import the tests start
# connects through a PgBouncer in pool_mode=transaction (the tests' own
# checks still go straight to PostgreSQL). `make test` runs the store,
# redelivery, poison and partition tests that way too.
VIA_PGBOUNCER = os.environ.get("LJ_TEST_PGBOUNCER") == "1"


@pytest.fixture(scope="session")
def servers():
    tmp = tempfile.mkdtemp(prefix="ljwx-it-")
    s = Servers(tmp)
    bouncer = None
    try:
        s.start_redis()
        s.start_pg()
        s.create_db()
        s.migrate()
        if VIA_PGBOUNCER:
            bouncer = PgBouncer(tmp, s.pg_port)
            bouncer.start()
            s.client_dsn = bouncer.dsn()
            s.client_pooled = "1"
        yield s
    finally:
        if bouncer:
            bouncer.stop()
        s.stop_redis()
        s.stop_pg()
        if not os.environ.get("LJ_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


class Proc:
    """A producer or consumer process; stop() asserts a clean exit (0), which
    under the sanitizer build also means no leak and no UB report."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.p.poll() is None

    def output(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                pytest.fail(f"{self.name} did not stop within {timeout}s:\n{self.output()}")
        self.log.close()
        return self.p.returncode


class Stack:
    """Producer and consumers of one test, on their own stream prefix."""

    def __init__(self, servers, tmp_path):
        self.s = servers
        self.tmp = tmp_path
        self.prefix = f"t{uuid.uuid4().hex[:8]}:"
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.procs = []

    def env(self, **extra):
        env = dict(os.environ)
        env.update({
            "LJ_REDIS_HOST": "127.0.0.1", "LJ_REDIS_PORT": str(self.s.redis_port),
            "LJ_PG_DSN": self.s.client_dsn, "LJ_PG_POOLED": self.s.client_pooled,
            "LJ_STREAM_PREFIX": self.prefix,
            "LJ_HTTP_HOST": "127.0.0.1", "LJ_HTTP_PORT": str(self.http_port),
            "LJ_LOG_LEVEL": "debug", "LJ_BLOCK_MS": "200", "LJ_STATUS_PORT": "0",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def _start(self, name, args, env):
        proc = Proc(name, [os.path.join(BIN, name)] + list(args), env,
                    str(self.tmp / f"{name}-{len(self.procs)}.log"))
        self.procs.append(proc)
        return proc

    def producer(self, *args, **env):
        proc = self._start("ljwx-producer", args, self.env(**env))

        def up():
            if not proc.alive():
                pytest.fail(f"producer exited:\n{proc.output()}")
            try:
                return requests.get(self.url + "/api/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(up, what="producer to answer /api/health")
        return proc

    def consumer(self, *args, **env):
        return self._start("ljwx-consumer", args, self.env(**env))

    def post(self, path, body, **kw):
        kw.setdefault("timeout", 10)
        data = body if isinstance(body, (bytes, str)) else __import__("json").dumps(body)
        return requests.post(self.url + path, data=data, **kw)

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url + path, **kw)

    def stream(self, kind="health_data_stream"):
        return self.prefix + kind

    def idle_groups(self):
        """Every stream's consumer group, created as a consumer would, with
        nobody reading: the stream system is healthy, nothing drains. The
        names come from the consumer's one list (common/kinds.c)."""
        r = self.s.redis()
        for k in stream_keys()["kinds"].values():
            r.xgroup_create(self.stream(k["stream"]), self.prefix + k["group"], id="$",
                            mkstream=True)

    def stop_all(self):
        failures = []
        for proc in reversed(self.procs):
            rc = proc.stop()
            if rc != 0:
                failures.append(f"{proc.name} exited {rc}:\n{proc.output()[-4000:]}")
        return failures


@pytest.fixture
def stack(servers, tmp_path):
    st = Stack(servers, tmp_path)
    yield st
    failures = st.stop_all()
    if failures:
        pytest.fail("\n".join(failures))


def failing_trigger(servers, sqlstate, sn_like):
    """A trigger that fails every health row whose device_sn is LIKE 'sn_like'
    with 'sqlstate' (e.g. 40001: PostgreSQL's failure; 22023: the data's).
    Returns a dropper."""
    name = f"fail_{sqlstate.lower()}_{uuid.uuid4().hex[:6]}"
    servers.sql(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.device_sn LIKE '{sn_like}' THEN
                RAISE EXCEPTION 'injected failure' USING ERRCODE = '{sqlstate}';
            END IF;
            RETURN NEW;
        END $$""")
    servers.sql(f"CREATE TRIGGER {name} BEFORE INSERT ON t_user_health_data"
                f" FOR EACH ROW EXECUTE FUNCTION {name}()")

    def drop():
        servers.sql(f"DROP TRIGGER IF EXISTS {name} ON t_user_health_data")
        servers.sql(f"DROP FUNCTION IF EXISTS {name}()")
    return drop


# A real 3-master, 3-replica Redis Cluster (redis_cluster.py).
@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Shared by every test that leaves the cluster whole: one start (~6 s)
    for the whole run; each test has its own key prefix."""
    from redis_cluster import RedisCluster
    c = RedisCluster(str(tmp_path_factory.mktemp("cluster"))).start()
    yield c
    c.stop()


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster of the test's own, for a test that kills or stops a node."""
    from redis_cluster import RedisCluster
    c = RedisCluster(str(tmp_path)).start()
    yield c
    c.stop()

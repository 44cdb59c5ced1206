"""Shared plumbing of the operator tools in scripts/ (rollout, rollback,
consistency, scale, dlq): settings from the same LJ_* environment variables
as the binaries, connections, one-line progress output, and the checks that
more than one tool runs (stream health, the consistency check).

    LJ_PRODUCER_URLS   producer base URLs, comma-separated (http://127.0.0.1:8080)
    LJ_ADMIN_TOKEN     bearer token for admin calls, when the producers have one
    LJ_PG_DSN, LJ_REDIS_HOST, LJ_REDIS_PORT, LJ_REDIS_PASSWORD, LJ_STREAM_PREFIX
    LJ_STREAM_SHARDS   shards per stream (default 1), as the binaries
    LJ_REDIS_CLUSTER   seed nodes host:port,... of a Redis Cluster (empty: one
                       Redis at LJ_REDIS_HOST:LJ_REDIS_PORT), as the binaries
    LJ_BIN_DIR         where ljwx-consumer is (default: build/ of this tree, then PATH)

Redis key names and fields are not written here: they come from
`ljwx-consumer --print-keys` (generated from common/streams.h), so the tools
and the binaries share one list.

The defaults are those of the local stack (`make run`, scripts/env.sh).
"""
import collections
import functools
import json
import os
import shutil
import subprocess
import sys
import time

import requests

def env(name, default):
    return os.environ.get(name, default)


def consumer_binary():
    """Path of the ljwx-consumer whose key names the tools use."""
    bin_dir = env("LJ_BIN_DIR", "")
    if bin_dir:
        return os.path.join(bin_dir, "ljwx-consumer")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build",
                        "ljwx-consumer")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("ljwx-consumer") or "ljwx-consumer"


@functools.lru_cache(maxsize=None)
def keys():
    """Every Redis key name and field, unprefixed, as the binaries use them
    (`ljwx-consumer --print-keys`, common/streams.h). Exits 2 when the
    binary cannot tell."""
    path = consumer_binary()
    try:
        out = subprocess.run([path, "--print-keys"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        fail("ljwxops", f"cannot read the key names from {path} --print-keys "
                        f"(set LJ_BIN_DIR): {e}", 2)


def kinds():
    """The stream kinds: "device", "event", "health"."""
    return sorted(keys()["kinds"])


def producer_urls():
    return [u.strip().rstrip("/") for u in
            env("LJ_PRODUCER_URLS", "http://127.0.0.1:8080").split(",") if u.strip()]


def prefix():
    return env("LJ_STREAM_PREFIX", "")


def stream(kind="health"):
    return prefix() + keys()["kinds"][kind]["stream"]


def group(kind="health"):
    return prefix() + keys()["kinds"][kind]["group"]


def dead_stream(kind="health"):
    """<stream>:dead of 'kind', prefixed."""
    return prefix() + keys()["kinds"][kind]["dead"]


def stream_shards():
    """LJ_STREAM_SHARDS: shards per stream, 1 .. 256 (the binaries' range)."""
    raw = env("LJ_STREAM_SHARDS", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        fail("ljwxops", f"LJ_STREAM_SHARDS={raw!r}: give a number 1 .. 256", 2)
    return n


def cluster_seeds():
    """[(host, port)] of LJ_REDIS_CLUSTER; [] on one Redis."""
    seeds = []
    for item in env("LJ_REDIS_CLUSTER", "").split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        try:
            seeds.append((host.strip("[]") or "127.0.0.1", int(port)))
        except ValueError:
            fail("ljwxops", f"LJ_REDIS_CLUSTER: bad seed {item!r} (host:port)", 2)
    return seeds


def tagged():
    """Whether stream names carry the shard tag: with more than one shard,
    and always on a cluster (common/streams.c stream_tagged)."""
    return stream_shards() > 1 or bool(cluster_seeds())


def shard_names(kind="health"):
    """The streams of 'kind', prefixed, shard 0 first: [<stream>] on one
    Redis with one shard, else [<stream>:{0}, ..., <stream>:{N-1}]
    (common/streams.c stream_shard_name). The one place that knows the layout."""
    plain = stream(kind)
    if not tagged():
        return [plain]
    return [f"{plain}:{{{k}}}" for k in range(stream_shards())]


def side_key(shard, side="dead", kind="health"):
    """The side key 'side' ("dead", "attempts", "counts") of a shard: the
    shard's name and the side's suffix, so it shares the shard's slot."""
    k = keys()["kinds"][kind]
    return shard + k[side][len(k["stream"]):]


def dead_streams(kind="health"):
    """[(shard, its dead-letter stream)] of 'kind', shard 0 first."""
    return [(s, side_key(s, "dead", kind)) for s in shard_names(kind)]


def shard_label(shard, kind="health"):
    """The shard's part of its name ("{3}"), "" for a plain stream."""
    return shard[len(stream(kind)) + 1:] if shard != stream(kind) else ""


def dead_field(name):
    """A dead-letter field: "reason", "id", "deliveries" or "consumer"."""
    return keys()["dead_fields"][name]


def admin_headers():
    token = env("LJ_ADMIN_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


class Unavailable(Exception):
    """A server that a check needs could not be reached; str() says which."""


def connect_redis():
    """One Redis, or a cluster client (redis-py's RedisCluster: each command
    to the master of its key's slot, MOVED and ASK followed) when
    LJ_REDIS_CLUSTER is set. Every command the tools send names one key."""
    import redis
    seeds = cluster_seeds()
    if seeds:
        import logging
        from redis.cluster import ClusterNode, RedisCluster
        # redis-py logs a traceback per unreachable seed; our one line says it.
        logging.getLogger("redis.cluster").addHandler(logging.NullHandler())
        logging.getLogger("redis.cluster").propagate = False
        try:
            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in seeds],
                                password=env("LJ_REDIS_PASSWORD", "") or None,
                                decode_responses=True, socket_timeout=10,
                                socket_connect_timeout=5)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as e:
            raise Unavailable(f"redis: cannot connect to the cluster (LJ_REDIS_CLUSTER): "
                              f"{e}") from None
    r = redis.Redis(host=env("LJ_REDIS_HOST", "127.0.0.1"), port=int(env("LJ_REDIS_PORT", "6390")),
                    password=env("LJ_REDIS_PASSWORD", "") or None, decode_responses=True,
                    socket_timeout=10, socket_connect_timeout=5)
    try:
        r.ping()
    except redis.exceptions.RedisError as e:
        raise Unavailable(f"redis: cannot connect (LJ_REDIS_HOST/LJ_REDIS_PORT): {e}") from None
    return r


def connect_pg():
    import psycopg
    dsn = env("LJ_PG_DSN", "host=127.0.0.1 port=5440 dbname=ljwx user=ljwx")
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        raise Unavailable(f"postgresql: cannot connect (LJ_PG_DSN): "
                          f"{str(e).splitlines()[0]}") from None


def redis_client():
    try:
        return connect_redis()
    except Unavailable as e:
        tool, msg = str(e).split(": ", 1)
        fail(tool, msg, 2)


def pg_connect():
    try:
        return connect_pg()
    except Unavailable as e:
        tool, msg = str(e).split(": ", 1)
        fail(tool, msg, 2)


# -- stream health (the old cutover script's check) ----------------------------

def stream_health(url):
    """(healthy, detail) of one producer's GET /api/stream_health: its
    "healthy" must be true (the old cutover script's rule), with the error
    it gives otherwise."""
    resp = requests.get(url + "/api/stream_health", timeout=5)
    try:
        body = resp.json()
    except ValueError:
        return False, f"HTTP {resp.status_code}, not JSON"
    if not isinstance(body, dict):
        return False, f"HTTP {resp.status_code}, not a JSON object"
    detail = f"healthy={json.dumps(body.get('healthy'))}"
    if body.get("error"):
        detail += f": {body['error']}"
    return body.get("healthy") is True, detail


# -- the consistency check (scripts/consistency, scripts/rollout) --------------

def by_path(pg, since, until):
    """[(upload_method, rows)] stored in the window."""
    return pg.execute("SELECT upload_method, count(*) FROM t_user_health_data"
                      " WHERE create_time >= %s AND create_time < %s GROUP BY 1 ORDER BY 1",
                      (since, until)).fetchall()


def duplicates(pg, since, until):
    """[(device_sn, ts, rows)]: one reading -- its exact key (device_sn, ts),
    to the microsecond -- stored more than once. Two readings of a device
    within one second are two readings, not a duplicate."""
    return pg.execute("SELECT device_sn, ts, count(*)"
                      " FROM t_user_health_data WHERE create_time >= %s AND create_time < %s"
                      " GROUP BY 1, 2 HAVING count(*) > 1"
                      " ORDER BY 1, 2 LIMIT 100", (since, until)).fetchall()


def _reading_us(rec):
    """The stored time of a stream record in integer microseconds: "ts"
    (ms) plus "ts_us" (microseconds past it, server-stamped readings)."""
    return int(rec["ts"]) * 1000 + int(rec.get("ts_us") or 0)


def _entry_id(s):
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


def _last_delivered(r, s, g):
    """The group's last-delivered-id as (ms, seq); None without the group."""
    try:
        for info in r.xinfo_groups(s):
            if info["name"] == g:
                return _entry_id(info["last-delivered-id"])
    except Exception:   # no stream yet
        pass
    return None


def reconcile_shard(pg, r, s, g, start, end):
    """reconcile() of one stream (a shard): (checked, missing, pending, undelivered)."""
    delivered = _last_delivered(r, s, g)
    pending = set()
    try:
        for p in r.xpending_range(s, g, "-", "+", 100_000):
            pending.add(p["message_id"])
    except Exception:   # no stream or no group yet: nothing pending
        pass
    checked, missing, undelivered = 0, [], 0
    for entry_id, fields in r.xrange(s, f"{start}-0", f"{end}-0"):
        if delivered is None or _entry_id(entry_id) > delivered:
            undelivered += 1
            continue
        if entry_id in pending or "payload" not in fields:
            continue
        try:
            records = json.loads(fields["payload"])
        except ValueError:
            continue    # unreadable: that is the dead-letter tool's business
        checked += 1
        keys = [(rec["device_sn"], _reading_us(rec)) for rec in records]
        # Both sides in integer microseconds (no float seconds); the range
        # on ts keeps the primary key usable.
        found = pg.execute("SELECT count(*) FROM t_user_health_data t"
                           " JOIN unnest(%s::text[], %s::bigint[]) AS k(sn, us)"
                           " ON t.device_sn = k.sn"
                           " AND t.ts >= timestamptz 'epoch' + (k.us - 1) * interval '1 microsecond'"
                           " AND t.ts <= timestamptz 'epoch' + (k.us + 1) * interval '1 microsecond'"
                           " AND (extract(epoch FROM t.ts) * 1000000)::bigint = k.us",
                           ([k[0] for k in keys], [k[1] for k in keys])).fetchone()[0]
        if found < len(keys):
            missing.append((entry_id, len(keys) - found))
    return checked, missing, sorted(pending), undelivered


def reconcile(pg, r, since, until, per_shard=None):
    """(acknowledged entries checked, [(entry, readings missing)], pending IDs,
    undelivered entries) for the health stream's entries added in the window,
    summed over its shards (each shard with its own group). An entry the
    group has not read yet (after its last-delivered-id) is lag, neither
    acknowledged nor missing. The group is read before its pending list, so
    an entry read in between counts as undelivered, never as acknowledged.
    'per_shard', a list, receives (shard, checked, missing, pending,
    undelivered) of each shard."""
    g = group()
    start, end = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    checked, missing, pending, undelivered = 0, [], [], 0
    names = shard_names()
    for s in names:
        c, m, p, u = reconcile_shard(pg, r, s, g, start, end)
        if per_shard is not None:
            per_shard.append((s, c, m, p, u))
        checked, undelivered = checked + c, undelivered + u
        missing += m
        pending += p
    if len(names) > 1:
        pending.sort(key=_entry_id)
    return checked, missing, pending, undelivered


Consistency = collections.namedtuple(
    "Consistency", "rows duplicates checked missing pending undelivered shards",
    defaults=((),))


def consistency(since, until):
    """The whole check over [since, until): raises Unavailable when Redis or
    PostgreSQL cannot be reached. Consistent when neither 'duplicates' nor
    'missing' has an item."""
    with connect_pg() as pg:
        rows = by_path(pg, since, until)
        dups = duplicates(pg, since, until)
        shards = []
        checked, missing, pending, undelivered = reconcile(pg, connect_redis(), since, until,
                                                           shards)
    return Consistency(rows, dups, checked, missing, pending, undelivered, tuple(shards))


def consistency_line(c):
    """The check's figures on one line."""
    return (f"duplicates={len(c.duplicates)} stream entries checked={c.checked} "
            f"missing_readings={len(c.missing)} pending={len(c.pending)} "
            f"undelivered={c.undelivered}")


def confirm_zero(urls, timeout, tool):
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            try:
                ratio = requests.get(url + "/api/stream_traffic_ratio", timeout=2).json()
                if ratio["current_ratio"] == 0:
                    say(tool, f"{url}: ratio 0")
                    pending.remove(url)
            except (requests.RequestException, ValueError, KeyError):
                pass
        time.sleep(0.1)
    return pending


def rollback(urls, timeout, tool="rollback"):
    """Calls the rollback on the first instance that answers; returns the
    instances that did not confirm ratio 0 within 'timeout'."""
    for url in urls:
        try:
            resp = requests.post(url + "/api/emergency_rollback", headers=admin_headers(),
                                 timeout=5)
        except requests.RequestException as e:
            say(tool, f"{url}: unreachable ({e.__class__.__name__})")
            continue
        if resp.status_code == 200:
            body = resp.json()
            say(tool, f"{url}: rolled back from {body.get('old_ratio')} at "
                          f"{body.get('rollback_time')}")
            return confirm_zero(urls, timeout, tool)
        say(tool, f"{url}: HTTP {resp.status_code} {resp.text.strip()[:200]}")
    return list(urls)


def say(tool, msg):
    print(f"{time.strftime('%H:%M:%S')} {tool}: {msg}", flush=True)


def fail(tool, msg, code=1):
    say(tool, "FAILED: " + msg)
    sys.exit(code)

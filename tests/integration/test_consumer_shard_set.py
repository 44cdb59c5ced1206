"""--serve-shards: a consumer process serving a chosen set of stream shards,
e.g. the shards of one database shard (docs/scaling.md, "PostgreSQL beyond
one primary"): stream shard k stored in database k mod M by running, per
database, a consumer with that database's DSN and its shards."""
import os
import subprocess
import uuid

import psycopg
import requests

from conftest import BIN, TOP, free_port, wait_for
from test_producer_cluster import BASE_S, wait_routing
from test_upload_v2 import GROUP

SHARDS = 3


def second_database(stack):
    """A database of its own on the test's server, migrated; its DSN."""
    name = f"ljwx_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host=127.0.0.1 port={stack.s.pg_port} dbname=postgres "
                         "user=postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} OWNER ljwx")
    dsn = f"host=127.0.0.1 port={stack.s.pg_port} dbname={name} user=ljwx"
    subprocess.run([os.path.join(TOP, "scripts", "migrate.sh"), "--dsn", dsn],
                   check=True, capture_output=True, text=True)
    return dsn


def rows(dsn, tag):
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT device_sn, stream_shard, count(*) FROM t_user_health_data"
                         " WHERE device_sn LIKE %s GROUP BY 1, 2", (tag + "%",)).fetchall()


def settled(stack):
    r = stack.s.redis()
    for k in range(SHARDS):
        name = f"{stack.prefix}health_data_stream:{{{k}}}"
        g = [g for g in r.xinfo_groups(name) if g["name"] == stack.prefix + GROUP] \
            if r.exists(name) else []
        if not g or g[0]["pending"] or g[0]["lag"]:
            return False
    return True


def test_a_bad_shard_set_is_refused_at_start(stack):
    for spec, why in (("3", "not below --stream-shards 3"), ("0,0", "named twice"),
                      ("1,x", "a list of shards")):
        out = subprocess.run([f"{BIN}/ljwx-consumer"], capture_output=True, text=True,
                             timeout=10, env=stack.env(LJ_STREAM_SHARDS=SHARDS,
                                                       LJ_SERVE_SHARDS=spec))
        assert out.returncode == 2 and why in out.stderr, (spec, out.stderr)


def test_each_database_shard_stores_its_stream_shards_only(stack):
    tag = f"SS{uuid.uuid4().hex[:6]}-"
    other = second_database(stack)
    stack.producer(LJ_STREAM_SHARDS=SHARDS)
    wait_routing(stack, tag + "warm")
    home = {}
    s = requests.Session()
    for d in range(30):
        sn = f"{tag}{d:03d}"
        resp = s.post(stack.url + "/upload_health_data_v2", timeout=10,
                      json={"data": {"deviceSn": sn, "heart_rate": 70,
                                     "timestamp": BASE_S * 1000}})
        assert resp.status_code == 200, resp.text
        home[sn] = resp.json()["shard"]
    assert set(home.values()) == set(range(SHARDS))
    env = dict(LJ_STREAM_SHARDS=SHARDS, LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0)
    stack.consumer(LJ_SERVE_SHARDS="0-1", LJ_STATUS_PORT=free_port(), **env)
    stack.consumer(LJ_SERVE_SHARDS="2", LJ_PG_DSN=other, LJ_STATUS_PORT=free_port(), **env)
    wait_for(lambda: settled(stack), timeout=30, what="every shard read and acknowledged")
    first = {sn: (k, n) for sn, k, n in rows(stack.s.dsn, tag + "0")}
    second = {sn: (k, n) for sn, k, n in rows(other, tag + "0")}
    assert first == {sn: (k, 1) for sn, k in home.items() if k in (0, 1)}
    assert second == {sn: (k, 1) for sn, k in home.items() if k == 2}

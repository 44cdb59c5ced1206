"""Operations endpoints with stream shards (SPEC §3, §7): /api/stream_stats,
/api/stream_health and /api/trace read every shard on its master and show
the sums under the old keys and plain names, the shards' detail under
"shards"; on a real 3-master cluster with 6 shards and on one Redis with 3.
(One Redis, one shard: the old shapes, test_old_shapes.py.)"""
import re
import time
import uuid

import requests

from conftest import free_port, wait_for
from test_producer_cluster import (BASE_S, client_of, consumer_env, send, shard, stored,
                                   wait_routing)

KINDS = ("health_data_stream", "device_info_stream", "common_event_stream")


def check_stats(stack, n, lengths):
    body = stack.get("/api/stream_stats").json()
    plain = stack.prefix + "health_data_stream"
    ours = body["streams"][plain]
    assert ours["length"] == sum(lengths.values())
    assert ours["dead_letters"] == 0
    assert {f"{plain}:{{{k}}}" for k in range(n)} == set(ours["shards"])
    assert {k: v["length"] for k, v in ours["shards"].items()} == lengths
    old = body["stream_stats"]["streams"][plain]["stream_info"]
    assert old["length"] == sum(lengths.values()) and isinstance(old["length"], int)
    assert isinstance(old["first_entry"], str) and isinstance(old["last_entry"], str)
    def as_id(i):
        return tuple(int(x) for x in i.split("-"))
    assert as_id(old["first_entry"]) < as_id(old["last_entry"])   # the oldest, the newest
    assert set(body["stream_stats"]["streams"]) == {stack.prefix + k for k in KINDS}
    assert set(body["consumer_stats"]) == {stack.prefix + k for k in KINDS}
    assert isinstance(body["timestamp"], int)
    return body


def check_health(stack, n, lengths, healthy):
    resp = stack.get("/api/stream_health")
    body = resp.json()
    assert body["healthy"] is healthy, body
    assert body["streams"] == [stack.prefix + k for k in KINDS]
    plain = stack.prefix + "health_data_stream"
    info = body["stream_info"][plain]
    assert info["length"] == sum(lengths.values())
    assert {k: v["length"] for k, v in info["shards"].items()} == lengths
    return body


def idle_groups(stack, n, client_of_key):
    """The device and event shards' groups, as their consumers would make
    them (the tests' consumers read health only)."""
    for kind, group in (("device_info_stream", "device_processors"),
                        ("common_event_stream", "event_processors")):
        for k in range(n):
            key = shard(stack, k, kind)
            client_of_key(key).xgroup_create(key, stack.prefix + group, id="$", mkstream=True)


def metric_rows(text, name):
    """{frozenset(labels): value} of metric 'name'."""
    rows = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            rows[frozenset(tuple(kv.split("=", 1)) for kv in labels.split(","))] = float(value)
    return rows


def check_metrics(stack, n, status_port, total):
    plain = stack.prefix + "health_data_stream"
    text = stack.get("/metrics").text
    sums = metric_rows(text, "ljwx_stream_entries")
    shards = metric_rows(text, "ljwx_stream_shard_entries")
    for state in ("accepted", "stored", "pending"):
        want = sums[frozenset({("stream", f'"{plain}"'), ("state", f'"{state}"')})]
        got = [v for k, v in shards.items()
               if ("stream", f'"{plain}"') in k and ("state", f'"{state}"') in k]
        assert len(got) == n and sum(got) == want, (state, got, want)
    assert sums[frozenset({("stream", f'"{plain}"'), ("state", '"accepted"')})] == total
    text = requests.get(f"http://127.0.0.1:{status_port}/metrics", timeout=5).text
    lengths = metric_rows(text, "ljwx_consumer_stream_length")
    assert {dict(k)["shard"] for k in lengths} == \
        {f'"{k}"' for k in range(n)}
    assert all(dict(k)["stream"] == f'"{plain}"' for k in lengths)
    sums = metric_rows(text, "ljwx_consumer_stream_sum")
    key = frozenset({("stream", f'"{plain}"'), ("figure", '"length"')})
    assert sums[key] >= 0
    return sums


def run(stack, tag, n, lengths_of, consumer, client_of_key, status_port):
    ids = send(stack, tag, 30)
    lengths = lengths_of()
    assert sum(lengths.values()) == len(ids) + 1        # and the warm-up
    check_stats(stack, n, lengths)
    body = check_health(stack, n, lengths, healthy=False)   # no consumer: no groups yet
    assert "consumer group" in body["error"]
    sn, eid = next(iter(ids.items()))
    assert stack.get(f"/api/trace/{eid}").json()["state"] == "in_stream"
    consumer()
    idle_groups(stack, n, client_of_key)
    wait_for(lambda: set(stored(stack, tag)) >= {(s, BASE_S) for s in ids}, timeout=60,
             what="every upload stored")
    wait_for(lambda: stack.get("/api/stream_health").json()["healthy"], timeout=20,
             what="every shard's group")
    assert stack.get(f"/api/trace/{eid}").json()["state"] == "stored"

    def consumed():
        b = stack.get("/api/stream_stats").json()
        return b["consumer_stats"][stack.prefix + "health_data_stream"][
            "processed_messages"] == len(ids) + 1
    wait_for(consumed, timeout=20, what="the consumers' counts summed over the shards")
    body = stack.get("/api/stream_stats").json()
    g = body["streams"][stack.prefix + "health_data_stream"]["groups"]
    assert g[0]["name"] == stack.prefix + "health_processors" and g[0]["lag"] >= 0

    def metrics_settled():
        try:
            return check_metrics(stack, n, status_port, len(ids) + 1)
        except (AssertionError, KeyError, requests.RequestException):
            return None
    wait_for(metrics_settled, timeout=20, what="per-shard rows and sums in /metrics")
    check_metrics(stack, n, status_port, len(ids) + 1)


def test_ops_on_six_shards_of_a_cluster(stack, cluster):
    tag = f"OC{uuid.uuid4().hex[:6]}-"
    env = dict(LJ_REDIS_CLUSTER=cluster.seeds(), LJ_STREAM_SHARDS=6)
    stack.producer(**env)
    wait_routing(stack, tag + "warm")
    of = client_of(cluster)
    cenv = consumer_env(cluster)

    def lengths():
        return {shard(stack, k): of(shard(stack, k)).xlen(shard(stack, k)) for k in range(6)}
    run(stack, tag, 6, lengths,
        lambda: stack.consumer("--workers", "1", **cenv), of, cenv["LJ_STATUS_PORT"])


def test_ops_on_three_shards_of_one_redis(stack):
    tag = f"OR{uuid.uuid4().hex[:6]}-"
    stack.producer(LJ_STREAM_SHARDS=3)
    wait_routing(stack, tag + "warm")
    r = stack.s.redis()
    port = free_port()

    def lengths():
        return {shard(stack, k): r.xlen(shard(stack, k)) for k in range(3)}
    run(stack, tag, 3, lengths,
        lambda: stack.consumer("--workers", "1", LJ_STREAM_SHARDS=3, LJ_DEVICE_WORKERS=0,
                               LJ_EVENT_WORKERS=0, LJ_STATUS_PORT=port), lambda key: r, port)


def test_an_id_two_shards_hand_out_is_told_apart_by_the_shard(stack):
    """Stream IDs are per stream: two shards adding an entry in one
    millisecond hand out one ID. The upload's answer names its shard, the
    row keeps it, and /api/trace/<id>?shard=K (scripts/trace --shard K)
    answers for that entry only; without it the answer says it is
    ambiguous and names the shards."""
    from test_consumer_shards import entry
    from test_ops_tools import tool
    tag = f"OA{uuid.uuid4().hex[:6]}-"
    stack.producer(LJ_STREAM_SHARDS=3)
    wait_routing(stack, tag + "warm")
    r = stack.s.redis()
    # Every answer names the shard holding its entry.
    by_shard = {}
    s = requests.Session()
    for d in range(30):
        sn = f"{tag}{d:03d}"
        body = s.post(stack.url + "/upload_health_data_v2",
                      json={"data": {"deviceSn": sn, "heart_rate": 70,
                                     "timestamp": BASE_S * 1000}}, timeout=10).json()
        got = r.xrange(shard(stack, body["shard"]), body["stream_id"], body["stream_id"])
        assert got and got[0][1]["device_sn"] == sn, (body, got)
        by_shard.setdefault(body["shard"], []).append((sn, body["stream_id"]))
    assert len(by_shard) == 3
    a, b, c = sorted(by_shard)
    sn_a, sn_b, sn_c = (by_shard[k][0][0] for k in (a, b, c))
    # One ID, an entry of shard a and one of shard b.
    eid = f"{int(time.time() * 1000) + 60_000}-0"
    for k, sn in ((a, sn_a), (b, sn_b)):
        r.xadd(shard(stack, k), entry([{"device_sn": sn, "ts": BASE_S * 1000 + 7_000,
                                        "heart_rate": 71}]), id=eid)

    def trace(query=""):
        return stack.get(f"/api/trace/{eid}{query}")
    assert trace().json() == {"state": "ambiguous", "shards": [a, b], "entries": [
        {"state": "in_stream", "shard": a}, {"state": "in_stream", "shard": b}]}
    assert trace(f"?shard={b}").json() == {"state": "in_stream", "shard": b}
    assert trace(f"?shard={c}").json() == {"state": "unknown"}
    for bad in ("?shard=3", "?shard=x", "?shard=", "?shard=-1", "?shard"):
        assert trace(bad).status_code == 400, bad
    assert trace("?xshard=1").status_code == 200        # another parameter: ignored
    consumer = stack.consumer("--workers", "1", LJ_STREAM_SHARDS=3, LJ_DEVICE_WORKERS=0,
                              LJ_EVENT_WORKERS=0, LJ_STATUS_PORT=free_port())
    wait_for(lambda: stored(stack, tag).get((sn_a, BASE_S + 7)) == 1 and
             stored(stack, tag).get((sn_b, BASE_S + 7)) == 1, timeout=30,
             what="both entries stored")
    wait_for(lambda: len(stored(stack, tag + "0")) == 32, timeout=30, what="every upload stored")
    for k, sn in ((a, sn_a), (b, sn_b)):
        body = trace(f"?shard={k}").json()
        assert (body["state"], body["rows"], body["device_sn"], body["shard"]) == \
            ("stored", 1, sn, k), body
    # Stored in two shards, waiting in the third: not "stored" for all.
    consumer.stop()
    r.xadd(shard(stack, c), entry([{"device_sn": sn_c, "ts": BASE_S * 1000 + 7_000,
                                    "heart_rate": 72}]), id=eid)
    body = trace().json()
    assert body["state"] == "ambiguous" and body["shards"] == [a, b, c], body
    assert [(e["state"], e["shard"]) for e in body["entries"]] == \
        [("stored", a), ("stored", b), ("in_stream", c)]
    assert [e["device_sn"] for e in body["entries"][:2]] == [sn_a, sn_b]
    # The rows keep their entry's shard, as the answers named it.
    rows = dict(stack.s.sql("SELECT device_sn, stream_shard FROM t_user_health_data"
                            " WHERE device_sn LIKE %s AND stream_id <> %s", (tag + "0%", eid)))
    assert rows == {sn: k for k, v in by_shard.items() for sn, _ in v}
    # The support tool: --shard K names one entry; without it, a note.
    env = {"LJ_STREAM_SHARDS": "3"}
    out = tool(stack, "trace", eid, "--shard", str(b), extra_env=env)
    assert out.returncode == 0 and f'"device_sn": "{sn_b}"' in out.stdout, out.stdout
    out = tool(stack, "trace", eid, extra_env=env)
    assert out.returncode == 1 and (f"note: the ID is an entry of 3 shards (shard {a}: stored; "
                                    f"shard {b}: stored; shard {c}: in_stream)") in out.stdout, \
        out.stdout


def test_aof_sizes_of_every_master_on_a_cluster(stack, cluster):
    """ljwx_redis_aof_*_bytes: one pair per master holding a shard, labelled
    by it (the alert compares each master with its own base)."""
    stack.producer(LJ_REDIS_CLUSTER=cluster.seeds(), LJ_STREAM_SHARDS=6,
                   LJ_RATIO_REFRESH_MS=100)
    masters = {cluster.master_of_slot(cluster.keyslot(shard(stack, k))) for k in range(6)}
    assert len(masters) == 3

    def sizes():
        text = stack.get("/metrics").text
        return {(m.group(1), m.group(2)): int(m.group(3)) for m in re.finditer(
            r'^ljwx_redis_aof_(current|base)_bytes\{master="127\.0\.0\.1:(\d+)"\} (\d+)$',
            text, re.M)}
    got = wait_for(lambda: len(sizes()) == 6 and sizes(), timeout=20,
                   what="both sizes of every master")
    assert {int(p) for _, p in got} == masters
    for (which, port), v in got.items():
        info = cluster.node(int(port)).info("persistence")
        assert 0 <= v <= info[f"aof_{which}_size"] * 2 + 4096, (which, port, v, info)
    assert not re.search(r"^ljwx_redis_aof_current_bytes ", stack.get("/metrics").text, re.M)

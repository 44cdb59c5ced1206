"""The operator tools in scripts/ (scale, dlq, trace, consistency, rollout)
on sharded streams: 6 shards of a real 3-master, 3-replica Redis Cluster
(LJ_REDIS_CLUSTER, LJ_STREAM_SHARDS=6) and 3 shards of one Redis
(LJ_STREAM_SHARDS=3). Each tool reads every shard and shows the sums; the
one-shard, one-Redis output is test_ops_tools.py's."""
import json
import re
import uuid

import pytest

from conftest import free_port, wait_for
from test_ops_shards import idle_groups
from test_ops_tools import tool
from test_producer_cluster import BASE_S, client_of, shard, stored, wait_routing
from test_producer_cluster import send as send_uploads


class Layout:
    """Where the shards are: 'env' for producer, consumer and tools alike,
    'of(key)' the client holding a key."""

    def __init__(self, n, env, of):
        self.n, self.env, self.of = n, env, of

    def consumer(self, stack, upkeep_ms=300):
        """A consumer of the health shards; with a long 'upkeep_ms' it trims
        no acknowledged entry during the test (the consistency check
        reconciles the entries still in the stream)."""
        return stack.consumer("--workers", "1", LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0,
                              LJ_BATCH_SIZE=20, LJ_CLAIM_IDLE_MS=2000,
                              LJ_UPKEEP_INTERVAL_MS=upkeep_ms, LJ_STATUS_PORT=free_port(),
                              **self.env)

    def lengths(self, stack, kind="health_data_stream"):
        return {shard(stack, k, kind): self.of(shard(stack, k, kind)).xlen(
            shard(stack, k, kind)) for k in range(self.n)}


@pytest.fixture(params=["cluster6", "redis3"])
def layout(request, stack):
    if request.param == "cluster6":
        c = request.getfixturevalue("cluster")
        return Layout(6, dict(LJ_REDIS_CLUSTER=c.seeds(), LJ_STREAM_SHARDS=6), client_of(c))
    r = stack.s.redis()
    return Layout(3, dict(LJ_STREAM_SHARDS=3), lambda key: r)


def run(stack, layout, name, *args, **kw):
    return tool(stack, name, *args, extra_env={k: str(v) for k, v in layout.env.items()}, **kw)


def send(stack, layout, tag, devices=24):
    """A producer on the layout and one upload of each device; {sn: stream_id}."""
    stack.producer(**layout.env)
    wait_routing(stack, tag + "warm")
    return send_uploads(stack, tag, devices)


def test_scale_status_per_shard_and_total(stack, layout):
    tag = f"SS{uuid.uuid4().hex[:6]}-"
    ids = send(stack, layout, tag)
    lengths = layout.lengths(stack)
    assert sum(lengths.values()) == len(ids) + 1 and sum(1 for v in lengths.values() if v) > 1
    out = run(stack, layout, "scale", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    for name, n in lengths.items():     # no group yet: all of it unknown lag
        assert f"  {name} length={n} pending=0 lag=unknown" in out.stdout, out.stdout
    plain = stack.prefix + "health_data_stream"
    assert (f"  {plain} total over {layout.n} shard(s): length={len(ids) + 1}"
            in out.stdout), out.stdout
    for kind in ("device_info_stream", "common_event_stream"):
        assert f"{stack.prefix}{kind} total over {layout.n} shard(s)" in out.stdout
    out = run(stack, layout, "scale", "1")
    assert out.returncode == 0 and "1 consumer process(es) running" in out.stdout
    try:
        wait_for(lambda: set(stored(stack, tag)) >= {(s, BASE_S) for s in ids}, timeout=60,
                 what="every upload stored")

        def drained():
            text = run(stack, layout, "scale", "status").stdout
            m = re.search(rf"  {re.escape(plain)} total over {layout.n} shard\(s\): "
                          r"length=(\d+) pending=(\d+) lag=(\d+) backlog=(\d+)(.*)", text)
            return m and m.group(4) == "0" and not m.group(5) and text
        text = wait_for(drained, timeout=20, what="backlog 0 over every shard")
        # Each shard has its group, read by the one process.
        assert text.count(f"    {stack.prefix}health_processors ") >= layout.n, text
    finally:
        out = run(stack, layout, "scale", "0")
    assert out.returncode == 0 and "0 consumer process(es) running" in out.stdout


def test_dlq_lists_every_shard_and_replays_into_the_same_shard(stack, layout):
    tag = f"DS{uuid.uuid4().hex[:6]}-"
    stack.producer(**layout.env)
    first, last = shard(stack, 0), shard(stack, layout.n - 1)
    dead = {}
    for k, key in ((0, first), (layout.n - 1, last)):
        sn = f"{tag}{k}"
        payload = json.dumps([{"device_sn": sn, "ts": 1_750_000_000_000 + k, "heart_rate": 70,
                               "source_method": "api"}])
        dead[key] = layout.of(key).xadd(key + ":dead", id=f"5-{k + 1}", fields={
            "dead_reason": "delivered 6 times without being stored", "dead_id": f"1-{k}",
            "dead_deliveries": "6", "dead_consumer": "x:1:0", "device_sn": sn,
            "message_type": "health_data", "api_version": "v2", "payload": payload})
    out = run(stack, layout, "dlq", "list")
    assert out.returncode == 0, out.stdout + out.stderr
    for k in range(layout.n):
        name = shard(stack, k) + ":dead"
        assert f"{name}: {1 if shard(stack, k) in dead else 0} entr(ies)" in out.stdout
    assert f"total: 2 entr(ies) in {layout.n} shard(s)" in out.stdout
    assert all(i in out.stdout for i in dead.values())
    out = run(stack, layout, "dlq", "show", dead[last])
    assert out.returncode == 0 and f"device_sn: {tag}{layout.n - 1}" in out.stdout
    assert f"== {last}:dead {dead[last]}" in out.stdout
    assert run(stack, layout, "dlq", "show", "9-9").returncode == 1
    out = run(stack, layout, "dlq", "list", "--shard", "0")
    assert f"{first}:dead: 1 entr(ies)" in out.stdout and last not in out.stdout
    out = run(stack, layout, "dlq", "replay", dead[first])          # by ID, found in shard 0
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{dead[first]}: replayed as {first} " in out.stdout
    out = run(stack, layout, "dlq", "replay", "--all")              # the rest
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{dead[last]}: replayed as {last} " in out.stdout
    for key in dead:    # back in the shard it came from, and out of its dead letters
        assert layout.of(key).xlen(key + ":dead") == 0
        assert [f["device_sn"] for _, f in layout.of(key).xrange(key)] == \
            [f"{tag}{0 if key == first else layout.n - 1}"]
    layout.consumer(stack)
    wait_for(lambda: stored(stack, tag) == {(f"{tag}0", 1_750_000_000): 1,
                                            (f"{tag}{layout.n - 1}", 1_750_000_000): 1},
             timeout=60, what="the replayed rows, once each")
    assert run(stack, layout, "dlq", "replay", dead[first]).returncode == 1    # nothing twice
    # Entry IDs are per stream: one that two shards' dead letters share is
    # replayed only when the shard is named.
    for key in (first, last):
        layout.of(key).xadd(key + ":dead", id="6-1", fields={
            "dead_reason": "r", "dead_id": "1-9", "dead_deliveries": "6",
            "dead_consumer": "x:1:0", "device_sn": f"{tag}x", "message_type": "health_data",
            "api_version": "v2", "payload": json.dumps([{
                "device_sn": f"{tag}x", "ts": 1_750_000_000_000, "heart_rate": 70,
                "source_method": "api"}])})
    out = run(stack, layout, "dlq", "replay", "6-1")
    assert out.returncode == 1 and "a dead letter in 2 shards" in out.stdout, out.stdout
    assert layout.of(first).xlen(first + ":dead") == 1
    out = run(stack, layout, "dlq", "replay", "6-1", "--shard", str(layout.n - 1))
    assert out.returncode == 0 and f"6-1: replayed as {last} " in out.stdout, out.stdout
    assert layout.of(first).xlen(first + ":dead") == 1
    assert layout.of(last).xlen(last + ":dead") == 0


def test_trace_finds_an_entry_in_whichever_shard(stack, layout):
    tag = f"TS{uuid.uuid4().hex[:6]}-"
    ids = send(stack, layout, tag, devices=12)

    def trace(*args):
        out = run(stack, layout, "trace", *args)
        return out.returncode, json.loads(out.stdout.splitlines()[0].split("trace: ", 1)[1])

    homes = {}
    for name in layout.lengths(stack):
        for eid, f in layout.of(name).xrange(name):
            homes[eid] = name
    assert len({homes[i] for i in ids.values()}) > 1        # several shards used
    sn, eid = next(iter(ids.items()))
    code, state = trace(eid)
    assert code == 1 and state["state"] == "in_stream", state
    assert homes[eid] == shard(stack, state["shard"])   # the shard holding it
    layout.consumer(stack, upkeep_ms=600_000)       # entries stay in their shards
    wait_for(lambda: set(stored(stack, tag)) >= {(s, BASE_S) for s in ids}, timeout=60,
             what="every upload stored")
    # IDs are per stream: two shards may hand out one in the same millisecond.
    unique = {sn: eid for sn, eid in ids.items() if list(ids.values()).count(eid) == 1}
    assert unique
    for sn, eid in unique.items():
        code, state = trace(eid)
        assert code == 0 and state["state"] == "stored" and state["device_sn"] == sn, state
    sn = next(iter(unique))
    code, state = trace("--device", sn, "--ts", str(BASE_S * 1000))
    assert code == 0 and state["stream_id"] == ids[sn]
    assert trace("1-1")[1] == {"state": "unknown"}
    # An ID in two shards: answered, with a note naming both.
    first, last = shard(stack, 0), shard(stack, layout.n - 1)
    for key in (first, last):
        layout.of(key).xadd(key, id="9999999999999-1", fields={"device_sn": f"{tag}x"})
    out = run(stack, layout, "trace", "9999999999999-1")
    assert f"note: the ID is an entry of 2 shards (shard 0: " in out.stdout, out.stdout
    code, state = trace("9999999999999-1", "--shard", str(layout.n - 1))
    # (the consumer may have dead-lettered it by now: it has no payload)
    assert code == 1 and state["shard"] == layout.n - 1 and "ambiguous" not in state, state


def test_consistency_over_every_shard(stack, layout):
    tag = f"CS{uuid.uuid4().hex[:6]}-"
    ids = send(stack, layout, tag, devices=18)
    layout.consumer(stack, upkeep_ms=600_000)
    wait_for(lambda: set(stored(stack, tag)) >= {(s, BASE_S) for s in ids}, timeout=60,
             what="every upload stored")

    def settled():
        out = run(stack, layout, "consistency", "--minutes", "5")
        return out.returncode == 0 and "pending=0 undelivered=0" in out.stdout and out
    out = wait_for(settled, timeout=20, what="every entry acknowledged")
    assert "duplicates=0" in out.stdout and "missing_readings=0" in out.stdout
    lines = re.findall(r"  shard (\S+): checked=(\d+) missing_readings=0", out.stdout)
    assert [n for n, _ in lines] == [shard(stack, k) for k in range(layout.n)], out.stdout
    checked = int(re.search(r"stream entries checked=(\d+)", out.stdout).group(1))
    assert checked == sum(int(c) for _, c in lines) == len(ids) + 1    # and the warm-up
    assert sum(1 for _, c in lines if int(c)) > 1                       # several shards
    sn = next(iter(ids))
    stack.s.sql("DELETE FROM t_user_health_data WHERE device_sn = %s", (sn,))   # a lost row
    out = run(stack, layout, "consistency", "--minutes", "5")
    assert out.returncode == 1, out.stdout + out.stderr
    home = next(name for name in layout.lengths(stack)
                if any(f["device_sn"] == sn for _, f in layout.of(name).xrange(name)))
    assert f"entry {ids[sn]} ({home}) acknowledged but 1 reading(s) not stored" in out.stdout


def test_rollout_reads_every_shard(stack, layout):
    tag = f"RS{uuid.uuid4().hex[:6]}-"
    ids = send(stack, layout, tag, devices=6)
    layout.consumer(stack, upkeep_ms=600_000)
    idle_groups(stack, layout.n, layout.of)
    wait_for(lambda: set(stored(stack, tag)) >= {(s, BASE_S) for s in ids}, timeout=60,
             what="every upload stored")
    wait_for(lambda: stack.get("/api/stream_health").json()["healthy"], timeout=20,
             what="every shard's group")
    out = run(stack, layout, "rollout", "--steps", "0.5,1.0", "--window", "1",
              "--interval", "0.3", "--precheck-minutes", "5", timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "precheck consistency ok" in out.stdout and "rollout complete at ratio 1.0" in out.stdout
    m = re.search(r"precheck consistency ok \(last 5 min\): .*stream entries checked=(\d+)",
                  out.stdout)
    assert m and int(m.group(1)) == len(ids) + 1, out.stdout     # every shard's entries
    key = stack.prefix + "stream_traffic_ratio"
    assert float(layout.of(key).get(key)) == 1.0
